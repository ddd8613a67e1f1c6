"""The safetensors header: an 8-byte little-endian length, then that many bytes of JSON, then the tensor data.

huggingface_hub and safetensors parse headers for the checks; this module serves the few places that need the
raw bytes or the data's start offset (reading 16-byte `weight_shape` values, fingerprinting a single-file
checkpoint, writing and reading logprob dumps).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import IO, Any

LENGTH = struct.Struct("<Q")
# Larger than any real header (a 90k-tensor MoE shard's is a few MB); a bigger length means a corrupt file.
MAX_HEADER_BYTES = 100_000_000


class HeaderError(ValueError):
    """The file does not start with a readable safetensors header."""


def raw_header(handle: IO[bytes]) -> bytes:
    """The length prefix and the JSON header, exactly as stored, read from the start of `handle`."""
    prefix = handle.read(LENGTH.size)
    if len(prefix) < LENGTH.size:
        raise HeaderError("shorter than a safetensors length prefix")
    (size,) = LENGTH.unpack(prefix)
    if size > MAX_HEADER_BYTES:
        raise HeaderError(f"header length {size} is implausible")
    body = handle.read(size)
    if len(body) < size:
        raise HeaderError("truncated header")
    return prefix + body


def read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The parsed header of `path` and the offset at which its tensor data starts."""
    with open(path, "rb") as handle:
        raw = raw_header(handle)
    try:
        header = json.loads(raw[LENGTH.size:])
    except ValueError as error:
        raise HeaderError(f"header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    return header, len(raw)


def encode_header(header: dict[str, Any]) -> bytes:
    """Length prefix + compact JSON, padded with spaces to 8 bytes as safetensors writes it."""
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return LENGTH.pack(len(encoded)) + encoded
