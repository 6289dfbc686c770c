"""Streams scikit-learn's breast cancer data set (569 samples, 30 features, a boolean label) as Avro.

    python examples/breast_cancer_avro/send_training_data.py --deployment-id 2

Features are standardised before sending (the model below has no normalisation layer).
A model for it (TensorFlow, 30 inputs):

    model = tf.keras.Sequential([
        tf.keras.layers.Input(shape=(30,)),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
"""

from __future__ import annotations

import argparse
import json

from sklearn.datasets import load_breast_cancer

from shared.datasources import AvroSink

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from client import stack_info


def schemas(names: list[str]) -> tuple[dict[str, object], dict[str, object]]:
    data = {
        "type": "record",
        "name": "Tumour",
        "fields": [{"name": f"f{i}", "type": "double", "doc": name} for i, name in enumerate(names)],
    }
    label = {"type": "record", "name": "Diagnosis", "fields": [{"name": "benign", "type": "boolean"}]}
    return data, label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deployment-id", type=int, required=True)
    parser.add_argument("--bootstrap-servers")
    parser.add_argument("--topic", default="breast-cancer")
    parser.add_argument("--control-topic", default="KAFKA_ML_CONTROL_TOPIC")
    args = parser.parse_args()

    data = load_breast_cancer()
    x = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    data_schema, label_schema = schemas(list(data.feature_names))
    with AvroSink(
        args.bootstrap_servers or stack_info()["bootstrap_servers"],
        args.topic,
        args.deployment_id,
        data_scheme=json.dumps(data_schema),
        label_scheme=json.dumps(label_schema),
        validation_rate=0.1,
        test_rate=0.2,
        control_topic=args.control_topic,
        description="scikit-learn breast cancer (Avro, boolean label)",
        partitions=2,
        progress=True,
        total=len(x),
    ) as sink:
        for row, target in zip(x, data.target, strict=True):
            sink.send({f"f{i}": float(v) for i, v in enumerate(row)}, {"benign": bool(target)})
    print(f"sent {len(x)} samples for deployment {args.deployment_id}")


if __name__ == "__main__":
    main()
