"""Inspect a compressed-tensors checkpoint from its safetensors headers and config.json, never its tensor data.

The reading (`read_checkpoint`, `read_remote_checkpoint`) is I/O; turning what was read into a `Checkpoint`
(`build_checkpoint`) is pure, so a local folder and a Hub revision become the same value and go through the same
checks. Headers are parsed by huggingface_hub (`parse_local_safetensors_file_metadata` locally,
`get_safetensors_metadata` remotely) and each local shard is opened with safetensors' `safe_open`, which refuses a
file whose size does not match its header. The quantization config is found by compressed-tensors
(`get_quantization_config`) and understood by quantconfig.py; what each quantized module must store comes from
formats.py. compressed-tensors is imported lazily, because it pulls in torch.
"""

from __future__ import annotations

import gc
import json
import struct
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from publish.checkpoint.architecture import Architecture, ArchitectureCache, describe_architecture
from publish.checkpoint.build import build_checkpoint
from publish.checkpoint.model import CONFIG_FILE, INDEX_FILE, SIDECAR_FILE, Checkpoint
from publish.errors import CheckpointError
from publish.util.listing import Listing, list_folder
from publish.util.safetensors_header import raw_header

# ---------------------------------------------------------------------------------------------------------------
# I/O: reading a local folder


def read_checkpoint(folder: Path, architectures: ArchitectureCache | None = None, listing: Listing | None = None
                    ) -> Checkpoint:
    """Read a local checkpoint folder (headers, index, config.json, sidecar) into a Checkpoint, with the
    architecture its config.json describes (remembered in `architectures`); `listing` is the folder's files when
    the caller has listed them already."""
    with without_gc():
        return _read_checkpoint(folder, architectures, listing)


@contextmanager
def without_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector: a 56k-tensor MoE allocates a few hundred thousand small acyclic objects,
    and with torch's heap loaded each collection they trigger rescans it all (bench/bench_moe.py measures it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_checkpoint(folder: Path, architectures: ArchitectureCache | None, listing: Listing | None) -> Checkpoint:
    from huggingface_hub import parse_local_safetensors_file_metadata
    from huggingface_hub.errors import SafetensorsParsingError
    from safetensors import SafetensorError, safe_open

    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist",
                              hint="fix the variant's path: in the manifest, or mount the disk holding the weights")
    files = (listing or list_folder(folder)).sizes()
    headers: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
    unreadable: dict[str, str] = {}
    weight_shapes: dict[str, tuple[int, ...]] = {}
    for shard in (name for name in files if name.endswith(".safetensors")):
        path = folder / shard
        try:
            meta = parse_local_safetensors_file_metadata(path)
            # safe_open validates what the header promises against the file: offsets, coverage, size.
            with safe_open(str(path), framework="numpy") as handle:
                weight_shapes.update(_weight_shapes(path, meta, handle))
        except (SafetensorsParsingError, SafetensorError, OSError) as error:
            unreadable[shard] = str(error)
            continue
        headers[shard] = tensor_table(meta)
    index, index_error = _read_json(folder / INDEX_FILE)
    config, config_error = _read_json(folder / CONFIG_FILE)
    if config is None and config_error is None:
        config_error = f"{CONFIG_FILE} is missing"
    sidecar, sidecar_error = _read_json(folder / SIDECAR_FILE)
    quantization_raw = find_quantization(folder / CONFIG_FILE) if config is not None else None
    return build_checkpoint(
        location=str(folder), files=files, headers=headers, unreadable=unreadable, index=index,
        index_error=index_error, config=config, config_error=config_error, quantization_raw=quantization_raw,
        sidecar=sidecar if sidecar_error is None else {"<unreadable>": sidecar_error}, weight_shapes=weight_shapes,
        architecture=architecture_of(config, quantization_raw, architectures),
    )


def architecture_of(config: Mapping[str, Any] | None, quantization_raw: Mapping[str, Any] | None,
                    architectures: ArchitectureCache | None) -> Architecture | None:
    """The architecture config.json describes, with the KV-cache scales its quantization_config asks for."""
    if config is None:
        return None
    kv = (quantization_raw or {}).get("kv_cache_scheme")
    return describe_architecture(config, kv if isinstance(kv, Mapping) else None, architectures)


def _weight_shapes(path: Path, meta: Any, handle: Any) -> dict[str, tuple[int, ...]]:
    """module -> the value of its weight_shape tensor. The usual I64 [2] is read as 16 bytes at its offset (a
    MoE has tens of thousands, and a get_tensor call each would dominate the read); anything else through safe_open."""
    found: dict[str, tuple[int, ...]] = {}
    with path.open("rb") as raw:
        data_start = len(raw_header(raw))
        for name, info in meta.tensors.items():
            if not name.endswith(".weight_shape"):
                continue
            module = name.rpartition(".")[0]
            if info.dtype == "I64" and list(info.shape) == [2]:
                raw.seek(data_start + info.data_offsets[0])
                found[module] = struct.unpack("<2q", raw.read(16))
            else:
                found[module] = tuple(int(v) for v in handle.get_tensor(name))
    return found


def tensor_table(meta: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each tensor's dtype and shape, from a huggingface_hub `SafetensorsFileMetadata` (local or remote)."""
    return {name: (info.dtype, tuple(info.shape)) for name, info in meta.tensors.items()}


def find_quantization(config_path: Path | str) -> Mapping[str, Any] | None:
    """Where vLLM looks: quantization_config, then text_config.quantization_config, then compression_config."""
    from compressed_tensors.utils.safetensors_load import get_quantization_config

    found = get_quantization_config(str(config_path))
    return found if isinstance(found, Mapping) else None


def _read_json(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    if not path.is_file():
        return None, None
    try:
        return parse_json_object(path.read_bytes(), path.name)
    except OSError as error:
        return None, f"{path.name} does not parse: {error}"


def parse_json_object(data: bytes, name: str) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object, or why `name` is not one; a broken file is a finding, not a crash."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{name} does not parse: {error}"
    return (parsed, None) if isinstance(parsed, dict) else (None, f"{name} is not a JSON object")
