"""Trained models travel through Kafka in chunks, each carrying the checksum of the whole."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Final

from shared.events.training import ArtifactChunk, Chunk

CHUNK_BYTES: Final = 512 * 1024


def chunk_artifact(result_id: int, data: bytes, chunk_bytes: int = CHUNK_BYTES) -> list[ArtifactChunk]:
    """The artifact as chunks, each carrying the checksum of the whole (an empty file is one empty chunk)."""
    digest = hashlib.sha256(data).hexdigest()
    pieces = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    return [
        ArtifactChunk(
            payload=Chunk(
                result_id=result_id,
                index=index,
                count=len(pieces),
                sha256=digest,
                data=base64.b64encode(piece).decode("ascii"),
            )
        )
        for index, piece in enumerate(pieces)
    ]


def chunk_bytes(chunk: Chunk) -> bytes:
    """The bytes a chunk carries; ValueError when its data is not base64."""
    try:
        return base64.b64decode(chunk.data, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"chunk {chunk.index} of result {chunk.result_id}: data is not base64 ({exc})") from exc


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
