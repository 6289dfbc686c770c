"""Shows an incremental training's windows and model versions as they appear, then each version's accuracy.

    python examples/digits_incremental/watch_versions.py --result-id 1

Polls ``GET /results/{id}/windows`` and ``GET /results/{id}/versions`` until the result ends,
printing each new window (its prequential accuracy: the window judged by the model before it
trained on it) and each new version. At the end it downloads every version
(``GET /results/{id}/versions/{n}/model``) and measures it on all the digits: the accuracy of
the model an inference following ``latest`` serves rises from version to version.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from sklearn.datasets import load_digits

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from client import Client, stack_info


def accuracy(model_bytes: bytes, kind: str) -> float | None:
    """The Keras version's accuracy on the 1797 digits (None for another format)."""
    if kind != "keras":
        return None
    import keras

    digits = load_digits()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(model_bytes)
        model = keras.models.load_model(path, safe_mode=True)
    predicted = model.predict(digits.images.astype("float32"), verbose=0).argmax(axis=1)
    return float((predicted == digits.target).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result-id", type=int, required=True)
    args = parser.parse_args()
    client = Client(stack_info())
    seen_windows: set[int] = set()
    seen_versions: set[int] = set()
    versions: list[dict[str, Any]] = []
    while True:
        result = client.call("GET", f"/results/{args.result_id}")
        for window in client.call("GET", f"/results/{args.result_id}/windows"):
            if window["window"] not in seen_windows:
                seen_windows.add(window["window"])
                made = f" → version {window['version']}" if window.get("version") else ""
                print(
                    f"window {window['window']}: {window['samples']} samples, prequential {window['prequential']}{made}"
                )
        versions = client.call("GET", f"/results/{args.result_id}/versions")
        for version in versions:
            if version["version"] not in seen_versions:
                seen_versions.add(version["version"])
                print(f"version {version['version']} stored: {version['metrics']}")
        if result["status"] in ("finished", "failed", "stopped"):
            print(f"result {args.result_id}: {result['status']}")
            break
        time.sleep(2)
    for version in versions:
        answer = client.call("GET", f"/results/{args.result_id}/versions/{version['version']}/model")
        found = accuracy(answer.content, version.get("format", "keras"))
        shown = "n/a" if found is None else f"{found:.3f}"
        print(f"version {version['version']}: accuracy on all digits {shown}")


if __name__ == "__main__":
    main()
