"""RAW data sources (upstream's ``RawSink``): value = the sample's bytes, key = the label's bytes.

Bytes are numpy C order of the declared ``data_type``/``label_type``; types and
shapes not given are taken from the first sample, as upstream does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np

from shared.control import ControlMessage, numpy_dtype, parse_shape
from shared.datasources.arguments import shape_text
from shared.datasources.async_sink import (
    DEFAULT_CONTROL_TOPIC,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_REQUEST_TIMEOUT_MS,
    AsyncKafkaMLSink,
)
from shared.datasources.sync_sink import KafkaMLSink
from shared.kafka_security import KafkaSecurity

Shape = str | int | Sequence[int] | None
_BYTES = (bytes, bytearray, memoryview)


def shape_option(reshape: Shape) -> str | None:
    """A reshape option as the control message writes it (``"8 8"``); raises ValueError for a bad one."""
    if reshape is None:
        return None
    if isinstance(reshape, str):
        text = reshape
    elif isinstance(reshape, int):
        text = str(reshape)
    else:
        text = " ".join(str(int(d)) for d in reshape)
    parse_shape(text)
    return text


def as_array(value: Any, type_name: str | None, name: str) -> np.ndarray[Any, Any]:
    """``value`` as a numpy array of ``type_name`` (None: its own type, native byte order).

    Raises ValueError for what is not numeric or would change meaning in the cast:
    a float that is not a whole number sent as an integer, a value out of range.
    """
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not array-like ({type(value).__name__}): {exc}") from exc
    if array.dtype.kind in "OUSVMm":
        raise ValueError(f"{name} must be numeric, got numpy dtype {array.dtype} from {type(value).__name__}")
    if type_name is None:
        # Network byte order differs from most machines': send native bytes, named by type only.
        return array if array.dtype.isnative else array.astype(array.dtype.newbyteorder("="))
    dtype = numpy_dtype(type_name)
    if array.dtype == dtype:
        return array
    if dtype.kind in "iu" and array.dtype.kind in "iufb":
        # Whole numbers held as floats (sklearn's digits are float64 0..16) may go as integers;
        # anything that would be truncated or wrapped may not.
        if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
            raise ValueError(f"{name} holds non-integer values; it cannot be sent as {type_name}")
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError(
                f"{name} values {array.min()}..{array.max()} do not fit in {type_name} ({info.min}..{info.max})"
            )
    elif not np.can_cast(array.dtype, dtype, casting="same_kind"):
        raise ValueError(f"{name} of type {array.dtype} cannot be sent as {type_name} without losing its meaning")
    return array.astype(dtype)


class _Part:
    """How one half of a sample (data or label) becomes bytes; fixed by the first one seen."""

    def __init__(self, name: Literal["data", "label"], type_name: str | None, reshape: Shape) -> None:
        self.name = name
        self.type_name = type_name
        self.dtype: np.dtype[Any] | None = numpy_dtype(type_name) if type_name is not None else None
        self.reshape = shape_option(reshape)
        self.reshape_size = None if self.reshape is None else math.prod(parse_shape(self.reshape))
        self.first_shape: tuple[int, ...] | None = None
        self.first_nbytes: int | None = None

    def encode(self, value: Any) -> bytes:
        if isinstance(value, _BYTES):
            return self._encode_bytes(bytes(value))
        array = self._as_array(value)
        if self.first_shape is None:
            self._fix_format(array)
        elif array.shape != self.first_shape:
            raise ValueError(
                f"{self.name} shape {array.shape} differs from the first sample's shape {self.first_shape}"
            )
        return array.tobytes(order="C")

    def _as_array(self, value: Any) -> np.ndarray[Any, Any]:
        return as_array(value, self.type_name, self.name)

    def _fix_format(self, array: np.ndarray[Any, Any]) -> None:
        if self.reshape_size is not None and array.size != self.reshape_size:
            raise ValueError(
                f"{self.name} shape {array.shape} has {array.size} values but "
                f"{self.name}_reshape {self.reshape!r} needs {self.reshape_size}"
            )
        if self.dtype is None:
            self.dtype = array.dtype
            self.type_name = array.dtype.name
        if self.reshape is None:
            self.reshape = shape_text(array.shape)
        self.first_shape = array.shape
        self.first_nbytes = array.nbytes

    def _encode_bytes(self, value: bytes) -> bytes:
        # Already encoded by the caller (upstream's examples send x.tobytes()): check what can be checked.
        if self.dtype is None:
            raise ValueError(f"{self.name}_type must be given to send {self.name} as bytes")
        if len(value) % self.dtype.itemsize:
            raise ValueError(f"{self.name} of {len(value)} bytes is not a whole number of {self.type_name} values")
        count = len(value) // self.dtype.itemsize
        if self.first_nbytes is None:
            if self.reshape_size is not None and count != self.reshape_size:
                raise ValueError(
                    f"{self.name} of {count} {self.type_name} values does not fit "
                    f"{self.name}_reshape {self.reshape!r} ({self.reshape_size} values)"
                )
            if self.reshape is None:
                self.reshape = shape_text((count,) if count != 1 else ())
            self.first_nbytes = len(value)
            self.first_shape = parse_shape(self.reshape)
        elif len(value) != self.first_nbytes:
            raise ValueError(
                f"{self.name} of {len(value)} bytes differs from the first sample's {self.first_nbytes} bytes"
            )
        return value


class RawEncoder:
    """Turns samples into RAW records and knows the ``input_config`` that describes them."""

    def __init__(
        self,
        data_type: str | None = None,
        label_type: str | None = None,
        data_reshape: Shape = None,
        label_reshape: Shape = None,
    ) -> None:
        self.data = _Part("data", data_type, data_reshape)
        self.label = _Part("label", label_type, label_reshape)

    def encode(self, data: Any, label: Any = None) -> tuple[bytes, bytes | None]:
        """``(value, key)``; the key is None when ``label`` is None."""
        value = self.data.encode(data)
        return value, None if label is None else self.label.encode(label)

    def encode_data(self, data: Any) -> bytes:
        return self.data.encode(data)

    @property
    def configured(self) -> bool:
        return self.data.type_name is not None

    @property
    def input_config(self) -> dict[str, Any]:
        if self.data.type_name is None:
            raise ValueError("the data format is not known yet: pass data_type or send a sample first")
        return {
            "data_type": self.data.type_name,
            "label_type": self.label.type_name,
            "data_reshape": self.data.reshape,
            "label_reshape": self.label.reshape,
        }


class AsyncRawSink(AsyncKafkaMLSink):
    """RAW data source, asyncio flavour: ``await sink.send(x, y)`` … ``await sink.close()``.

    Parameters as ``RawSink``.
    """

    input_format: ClassVar[Literal["RAW", "AVRO"]] = "RAW"
    encoder: RawEncoder

    def __init__(
        self,
        boostrap_servers: str | Sequence[str] | None = None,
        topic: str | None = None,
        deployment_id: int | str | None = None,
        data_type: str | None = None,
        label_type: str | None = None,
        description: str = "",
        data_reshape: Shape = None,
        label_reshape: Shape = None,
        validation_rate: float = 0.0,
        test_rate: float = 0.0,
        control_topic: str = DEFAULT_CONTROL_TOPIC,
        group_id: str = "sink",
        unsupervised_topic: str | None = None,
        *,
        bootstrap_servers: str | Sequence[str] | None = None,
        dataset_restrictions: Mapping[str, Any] | str | None = None,
        partitions: int | None = None,
        progress: bool = False,
        total: int | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
        producer_config: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.encoder = RawEncoder(data_type, label_type, data_reshape, label_reshape)
        super().__init__(
            boostrap_servers=boostrap_servers,
            bootstrap_servers=bootstrap_servers,
            topic=topic,
            deployment_id=deployment_id,
            description=description,
            validation_rate=validation_rate,
            test_rate=test_rate,
            control_topic=control_topic,
            group_id=group_id,
            unsupervised_topic=unsupervised_topic,
            dataset_restrictions=dataset_restrictions,
            partitions=partitions,
            progress=progress,
            total=total,
            max_in_flight=max_in_flight,
            request_timeout_ms=request_timeout_ms,
            producer_config=producer_config,
            security=security,
        )

    @property
    def data_type(self) -> str | None:
        return self.encoder.data.type_name

    @property
    def label_type(self) -> str | None:
        return self.encoder.label.type_name

    @property
    def data_reshape(self) -> str | None:
        return self.encoder.data.reshape

    @property
    def label_reshape(self) -> str | None:
        return self.encoder.label.reshape

    async def send_online_control_msg(self, data: Any = None, label: Any = None) -> ControlMessage:
        """Announces the topic as an online data source; a sample (not sent) fixes the format if needed."""
        if data is not None and not self.encoder.configured:
            self.encoder.encode(data, label)
        return await super().send_online_control_msg()


class RawSink(KafkaMLSink[AsyncRawSink]):
    """RAW data source with upstream Kafka-ML's constructor and methods (blocking).

    Args (upstream's, in upstream's order):
        boostrap_servers: Kafka brokers, ``"host:port[,host:port]"`` or a list (upstream's spelling;
            ``bootstrap_servers=`` works too; default ``KAFKAML_BOOTSTRAP_SERVERS``).
        topic: the data topic.
        deployment_id: the deployment that trains on this data (any non-negative int).
        data_type, label_type: numpy type names (``uint8``, ``float32``, upstream's ``half``/``float``/``double``);
            None: the first sample's type. Samples are cast to them (a lossy cast, e.g. float to int, raises).
        description: shown with the data source.
        data_reshape, label_reshape: shapes as ``"8 8"``; None: the first sample's shape (a scalar: ``"1"``).
        validation_rate, test_rate: shares of the samples for validation and test (sum below 1).
        control_topic: where the control message goes (``KAFKA_ML_CONTROL_TOPIC``).
        group_id: accepted for compatibility; unused (no consumer is needed).
        unsupervised_topic: topic for ``unsupervised_send`` samples; its ranges go in the control message.

    Keyword-only additions:
        dataset_restrictions: passed through in the control message.
        partitions: create the data (and unsupervised) topic with this many partitions when missing
            (replication factor 1, as the embedded broker needs; create topics yourself on a replicated
            cluster). None: a missing topic is auto-created by the broker, with its default partition count.
        progress, total: a tqdm progress bar over ``total`` samples.
        max_in_flight: unacknowledged records allowed before ``send`` waits.
        request_timeout_ms: how long a record may wait for its acknowledgement.
        producer_config: extra ``AIOKafkaProducer`` options (compression, ...).
        security: how to reach a secured cluster (``shared.kafka_security.KafkaSecurity``: protocol,
            SASL mechanism, user and password, CA and client certificate files). None: the
            ``KAFKAML_`` security settings, PLAINTEXT unless set, as upstream.

    ``send(data, label)`` takes numpy arrays, scalars, lists, tensors with ``__array__``, or bytes already
    encoded; ``close()`` flushes and sends the control message.
    """

    def __init__(
        self,
        boostrap_servers: str | Sequence[str] | None = None,
        topic: str | None = None,
        deployment_id: int | str | None = None,
        data_type: str | None = None,
        label_type: str | None = None,
        description: str = "",
        data_reshape: Shape = None,
        label_reshape: Shape = None,
        validation_rate: float = 0.0,
        test_rate: float = 0.0,
        control_topic: str = DEFAULT_CONTROL_TOPIC,
        group_id: str = "sink",
        unsupervised_topic: str | None = None,
        *,
        bootstrap_servers: str | Sequence[str] | None = None,
        dataset_restrictions: Mapping[str, Any] | str | None = None,
        partitions: int | None = None,
        progress: bool = False,
        total: int | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS,
        producer_config: Mapping[str, Any] | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        super().__init__(
            AsyncRawSink(
                boostrap_servers,
                topic,
                deployment_id,
                data_type,
                label_type,
                description,
                data_reshape,
                label_reshape,
                validation_rate,
                test_rate,
                control_topic,
                group_id,
                unsupervised_topic,
                bootstrap_servers=bootstrap_servers,
                dataset_restrictions=dataset_restrictions,
                partitions=partitions,
                progress=progress,
                total=total,
                max_in_flight=max_in_flight,
                request_timeout_ms=request_timeout_ms,
                producer_config=producer_config,
                security=security,
            )
        )

    @property
    def data_type(self) -> str | None:
        return self.sink.data_type

    @property
    def label_type(self) -> str | None:
        return self.sink.label_type

    @property
    def data_reshape(self) -> str | None:
        return self.sink.data_reshape

    @property
    def label_reshape(self) -> str | None:
        return self.sink.label_reshape

    def send_online_control_msg(self, data: Any = None, label: Any = None) -> ControlMessage:
        """Announces the topic as an online data source; a sample (not sent) fixes the format if needed."""
        if data is not None and not self.sink.encoder.configured:
            self.sink.encoder.encode(data, label)
        return super().send_online_control_msg()
