"""Logprob dumps: one model's top-K next-token log-probabilities over fixed token windows, in safetensors.

A dump holds `token_ids` I64 [N, L], `topk_ids` I32 [N, L, K] and `topk_logprobs` F32 [N, L, K] (sorted by
descending probability; row t predicts token t + 1, the last row what follows the window), `target_logprobs`
F32 [N, L] (the log-probability of the correct next token, token t + 1, whether or not it is in the top-K; NaN on
the last row, which has none), and `logprobs` F32 [N, L, V] when K ≥ vocab. What produced it (model, revision,
weights digest, dataset, window, samples, K, tokenizer) is in the safetensors metadata. Windows are written one
file each into `<dump>.partial/` as they finish, so an interrupted run resumes where it stopped, then streamed into
the dump without holding it in memory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from publish.errors import DumpError
from publish.util.safetensors_header import encode_header, read_header

DUMP_FORMAT = "hubpub-logprobs"
# Version 2 added `target_logprobs`; a version 1 dump is made again.
DUMP_VERSION = 2
TENSORS = ("token_ids", "topk_ids", "topk_logprobs", "target_logprobs", "logprobs")
REQUIRED = TENSORS[:4]
_DTYPES = {"token_ids": ("I64", np.int64), "topk_ids": ("I32", np.int32), "topk_logprobs": ("F32", np.float32),
           "target_logprobs": ("F32", np.float32), "logprobs": ("F32", np.float32)}


@dataclass(frozen=True)
class DumpInfo:
    """What a dump is of; stored as the safetensors metadata (strings), read back typed."""

    model: str
    backend: str  # transformers | server
    dataset: str  # a datasets name, or a text file's name
    split: str | None
    text_sha256: str | None
    sequence_length: int
    samples: int
    top_k: int
    vocab_size: int
    revision: str | None = None
    weights_sha256: str | None = None
    tokenizer: str | None = None
    tokenizer_sha256: str | None = None

    @property
    def full(self) -> bool:
        """The top-K is the whole vocabulary, so the dump also holds full distributions."""
        return self.top_k >= self.vocab_size

    def to_metadata(self) -> dict[str, str]:
        data = {k: ("" if v is None else str(v)) for k, v in asdict(self).items()}
        return {"format": DUMP_FORMAT, "version": str(DUMP_VERSION), **data}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: Path) -> DumpInfo:
        if meta.get("format") != DUMP_FORMAT:
            raise DumpError("not a hubpub logprob dump (metadata 'format' is not hubpub-logprobs)", file=source,
                            hint="make dumps with `hubpub eval dump`")
        if meta.get("version") != str(DUMP_VERSION):
            raise DumpError(f"dump version {meta.get('version')!r} is not supported (this hubpub reads {DUMP_VERSION})",
                            file=source, hint="make the dump again with this hubpub")
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = meta.get(f.name, "")
            if f.type in ("int",):
                try:
                    values[f.name] = int(raw)
                except ValueError:
                    raise DumpError(f"metadata {f.name!r} is {raw!r}, not an integer", file=source) from None
            else:
                values[f.name] = raw or None
        return cls(**values)


@dataclass(frozen=True)
class WindowLogprobs:
    """One window's tokens [L], its top-K ids/log-probs [L, K], the correct next token's log-prob [L] (NaN on the
    last row) and full log-probs [L, V] when K ≥ vocab."""

    tokens: npt.NDArray[np.int64]
    topk_ids: npt.NDArray[np.int32]
    topk_logprobs: npt.NDArray[np.float32]
    target_logprobs: npt.NDArray[np.float32]
    logprobs: npt.NDArray[np.float32] | None = None

    def tensors(self) -> dict[str, np.ndarray]:
        out = {"token_ids": self.tokens, "topk_ids": self.topk_ids, "topk_logprobs": self.topk_logprobs,
               "target_logprobs": self.target_logprobs}
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs
        return {name: np.ascontiguousarray(value, dtype=_DTYPES[name][1]) for name, value in out.items()}


def make_windows(token_ids: list[int] | npt.NDArray[np.int64], sequence_length: int, samples: int,
                 source: str) -> npt.NDArray[np.int64]:
    """The first `samples` non-overlapping windows of `sequence_length` tokens, [samples, L]."""
    tokens = np.asarray(token_ids, dtype=np.int64)
    available = len(tokens) // sequence_length
    if available < samples:
        raise DumpError(
            f"{len(tokens):,} tokens make {available} windows of {sequence_length}, fewer than the {samples} asked for",
            file=source, hint="lower --samples or --sequence-length, or use a longer text",
        )
    return tokens[: samples * sequence_length].reshape(samples, sequence_length)


# --- partial windows ---------------------------------------------------------------------------------------------


def partial_folder(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def _partial_path(folder: Path, index: int) -> Path:
    return folder / f"window-{index:06d}.safetensors"


def write_partial(folder: Path, index: int, window: WindowLogprobs, info: DumpInfo) -> None:
    """Write one finished window atomically: a crash leaves either the whole window or nothing."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = _partial_path(folder, index)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    save_file(window.tensors(), str(tmp), metadata=info.to_metadata())
    os.replace(tmp, path)


def partial_done(folder: Path, index: int, tokens: npt.NDArray[np.int64], info: DumpInfo) -> bool:
    """Whether window `index` is finished for exactly these tokens, model and K (a torn or foreign file is redone)."""
    from safetensors import SafetensorError, safe_open

    path = _partial_path(folder, index)
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="numpy") as part:
            if part.metadata() != info.to_metadata():
                return False
            return bool(np.array_equal(part.get_tensor("token_ids"), tokens))
    except (SafetensorError, OSError, KeyError, ValueError):
        return False


def assemble(folder: Path, out: Path, info: DumpInfo) -> str:
    """Stream the partial windows into one safetensors dump (atomically); return its sha256; drop the partials."""
    from safetensors import safe_open

    count = info.samples
    paths = [_partial_path(folder, i) for i in range(count)]
    missing = [str(i) for i, p in enumerate(paths) if not p.is_file()]
    if missing:
        raise DumpError(f"windows {', '.join(missing[:5])} are not finished", file=folder,
                        hint="rerun the same `hubpub eval dump` command to finish them")
    with safe_open(str(paths[0]), framework="numpy") as first:
        shapes = {name: first.get_slice(name).get_shape() for name in TENSORS if name in set(first.keys())}
    header: dict[str, Any] = {"__metadata__": info.to_metadata()}
    offset = 0
    for name, shape in shapes.items():
        dtype, np_dtype = _DTYPES[name]
        size = count * int(np.prod(shape)) * np.dtype(np_dtype).itemsize
        header[name] = {"dtype": dtype, "shape": [count, *shape], "data_offsets": [offset, offset + size]}
        offset += size
    encoded = encode_header(header)
    digest = hashlib.sha256()
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as handle:
        handle.write(encoded)
        digest.update(encoded)
        for name, shape in shapes.items():
            for path in paths:
                with safe_open(str(path), framework="numpy") as part:
                    if list(part.get_slice(name).get_shape()) != list(shape):
                        raise DumpError(f"tensor {name!r} has shape {part.get_slice(name).get_shape()}, "
                                        f"other windows have {shape}", file=path, hint="delete it and rerun")
                    data = np.ascontiguousarray(part.get_tensor(name), dtype=_DTYPES[name][1]).tobytes()
                handle.write(data)
                digest.update(data)
    os.replace(tmp, out)
    shutil.rmtree(folder, ignore_errors=True)
    return digest.hexdigest()


# --- reading -----------------------------------------------------------------------------------------------------


class Dump:
    """A dump opened for reading in slices of windows, with positioned reads: never loaded or mapped whole, so a
    1 GB dump costs only the slice being scored in resident memory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise DumpError("dump not found", file=path, hint="make it with `hubpub eval dump`")
        header, self._data_start = _read_header(path)
        self.info = DumpInfo.from_metadata(header.pop("__metadata__", None) or {}, path)
        self._tensors: dict[str, tuple[np.dtype[Any], list[int], int]] = {}
        for name, entry in header.items():
            dtype = {code: np.dtype(t) for code, t in _DTYPES.values()}.get(entry.get("dtype"))
            if name in TENSORS and dtype is not None:
                self._tensors[name] = (dtype, list(entry["shape"]), int(entry["data_offsets"][0]))
        for name in REQUIRED:
            if name not in self._tensors:
                raise DumpError(f"tensor {name!r} is missing or has the wrong dtype", file=path,
                                hint="make the dump again with `hubpub eval dump`")
        shape, k = self._tensors["token_ids"][1], self._tensors["topk_ids"][1]
        target = self._tensors["target_logprobs"][1]
        if shape != [self.info.samples, self.info.sequence_length] or k[:2] != shape or len(k) != 3 or target != shape:
            raise DumpError(f"tensor shapes {shape} / {k} / {target} do not match the metadata's samples "
                            f"{self.info.samples} and sequence_length {self.info.sequence_length}", file=path)
        self.top_k = int(k[2])
        self.has_full = "logprobs" in self._tensors

    def token_ids(self) -> npt.NDArray[np.int64]:
        return self.rows("token_ids", slice(0, self.info.samples), slice(0, self.info.sequence_length)).reshape(
            self.info.samples, self.info.sequence_length)

    def rows(self, name: str, windows: slice, rows: slice) -> np.ndarray:
        """`name`[windows, rows] flattened to [windows × rows, ...]."""
        dtype, shape, begin = self._tensors[name]
        length, inner = shape[1], shape[2:]
        per_row = int(np.prod(inner, dtype=np.int64)) * dtype.itemsize
        first, last, _ = windows.indices(shape[0])
        r0, r1, _ = rows.indices(length)
        out = np.empty(((last - first) * (r1 - r0), *inner), dtype=dtype)
        view = out.reshape(-1).view(np.uint8)
        with open(self.path, "rb", buffering=0) as handle:
            if r0 == 0 and r1 == length:  # whole windows are contiguous: one read
                _read_into(handle, view, self._data_start + begin + first * length * per_row)
            else:
                size = (r1 - r0) * per_row
                for i, window in enumerate(range(first, last)):
                    offset = self._data_start + begin + (window * length + r0) * per_row
                    _read_into(handle, view[i * size:(i + 1) * size], offset)
        return out


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    try:
        return read_header(path)
    except (OSError, ValueError) as error:
        raise DumpError(f"not a readable safetensors file: {error}", file=path,
                        hint="make the dump again with `hubpub eval dump`") from None


def _read_into(handle: Any, view: np.ndarray, offset: int) -> None:
    handle.seek(offset)
    done = 0
    while done < view.nbytes:
        count = handle.readinto(view.data[done:])
        if not count:
            raise DumpError("the dump is truncated", file=handle.name, hint="make the dump again")
        done += count
