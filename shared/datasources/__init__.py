"""Kafka-ML data sources: stream training data to Kafka and announce it to a deployment.

Upstream's scripts run with only their import changed::

    from shared.datasources import RawSink   # was: from datasources.raw_sink import RawSink

    sink = RawSink(boostrap_servers="localhost:9094", topic="digits", deployment_id=1,
                   data_type="uint8", label_type="uint8", validation_rate=0.1, test_rate=0.1)
    for x, y in zip(images, labels):
        sink.send(data=x, label=y)
    sink.close()          # flushes, then sends the control message

``OnlineRawSink`` streams without end for incremental training (it announces itself before its
first record; ``online_close()`` ends it). ``AsyncRawSink``/``AsyncAvroSink`` are the asyncio
versions (``await sink.send(...)``, ``async with``); ``send_file`` streams a CSV, ``.npy`` or
``.npz`` file (``kafkaml send``). ``AvroInference`` sends Avro values to an inference's input topic.
"""

from shared.datasources.async_sink import DEFAULT_CONTROL_TOPIC, AsyncKafkaMLSink
from shared.datasources.avro import AsyncAvroSink, AvroEncoder, AvroSink, record_schema
from shared.datasources.errors import DeliveryError, SinkError
from shared.datasources.inference import AsyncAvroInference, AvroInference
from shared.datasources.online import AsyncOnlineRawSink, OnlineRawSink
from shared.datasources.ranges import AckRanges
from shared.datasources.raw import AsyncRawSink, RawEncoder, RawSink
from shared.datasources.sync_sink import KafkaMLSink

__all__ = [
    "DEFAULT_CONTROL_TOPIC",
    "AckRanges",
    "AsyncAvroInference",
    "AsyncAvroSink",
    "AsyncKafkaMLSink",
    "AsyncOnlineRawSink",
    "AsyncRawSink",
    "AvroEncoder",
    "AvroInference",
    "AvroSink",
    "DeliveryError",
    "KafkaMLSink",
    "OnlineRawSink",
    "RawEncoder",
    "RawSink",
    "SinkError",
    "record_schema",
]
