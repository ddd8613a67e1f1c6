"""Full-size Qwen3.6-27B INT8 checkpoints as sparse files: exact headers, data left as filesystem holes.

A real-scale fixture for header-only checks (sizes, total_size, shard bookkeeping, weight_shape values) that costs
about a megabyte of disk for ~37 GB of apparent data. The safetensors headers are written by hand, byte-identical
to what ``safetensors.torch.save_file`` produces (same tensor order, compact JSON, space padding to 8 bytes); only
each ``weight_shape`` value (16 bytes, int64 [out, in]) is real data, so value checks work too.

config.json, the sidecar and the index come from the same builders as the tiny fixtures
(``tests/fixtures/checkpoints.py``). Importing this module does not import torch; building the
``quantization_config`` does, lazily, because it runs compressed-tensors on a meta module tree.

Usage: ``python bench/sparse.py OUT_DIR`` builds OUT_DIR/main and OUT_DIR/gs128 and prints their sizes.
"""

from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository's tests.fixtures importable
    sys.path.insert(0, str(ROOT))

from tests.fixtures.checkpoints import model_config, quantization_config, write_metadata
from tests.fixtures.layout import (
    FULL,
    INDEX_FILE,
    VARIANTS,
    Dims,
    StoredTensor,
    Variant,
    index_json,
    layout,
    plan_shards,
    quantized_modules,
    stored_tensors,
    variant_group_size,
)

DEFAULT_SHARD_BYTES = 5_000_000_000  # max_shard_size="5GB", as AutoRound's save_pretrained call uses

# safetensors (Rust) orders a file's tensors by dtype, in reverse of its Dtype enum order, then by name.
_DTYPE_RANK = {"BOOL": 0, "U8": 4, "I8": 5, "I16": 9, "U16": 10, "F16": 11, "BF16": 12, "I32": 13, "U32": 14,
               "F32": 15, "F64": 16, "I64": 17, "U64": 18}  # fmt: skip


def safetensors_header(tensors: list[StoredTensor], metadata: dict[str, str] | None = None) -> tuple[bytes, dict]:
    """Serialized header (8-byte LE length + padded JSON) and the parsed header dict with data_offsets."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for t in sorted(tensors, key=lambda t: (-_DTYPE_RANK[t.dtype], t.name)):
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the JSON with spaces so the data region is 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw, header


def write_sparse_safetensors(path: Path, tensors: list[StoredTensor], values: dict[str, bytes]) -> int:
    """Write the header, the given tensor values, and leave every other byte as a hole; return the file size."""
    head, header = safetensors_header(tensors, {"format": "pt"})
    total = len(head) + max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    with path.open("wb") as f:
        f.write(head)
        for name, data in values.items():
            start, end = header[name]["data_offsets"]
            assert len(data) == end - start, name
            f.seek(len(head) + start)
            f.write(data)
        f.truncate(total)  # extends the file without allocating blocks: the data region stays sparse
    return total


def build_sparse_checkpoint(
    folder: Path,
    variant: Variant,
    dims: Dims = FULL,
    *,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    mtp_ignore: str = "names",
) -> Path:
    """Write a sparse checkpoint of ``variant`` with the same file set and metadata as a real export."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    quantized, group = quantized_modules(dims, variant), variant_group_size(variant)
    files = plan_shards(stored_tensors(dims, quantized, group), max_shard_bytes)
    shapes = {f"{e.module}.weight_shape": e.shape for e in layout(dims) if e.is_linear and e.module in quantized}
    for file, tensors in files.items():
        values = {t.name: struct.pack("<2q", *shapes[t.name]) for t in tensors if t.name in shapes}
        write_sparse_safetensors(folder / file, tensors, values)
    qconfig = quantization_config(dims, quantized, group, mtp_ignore=mtp_ignore)  # type: ignore[arg-type]
    write_metadata(folder, dims, model_config(dims, qconfig), qconfig, index_json(files))
    return folder


@dataclass(frozen=True)
class Stats:
    """What a built checkpoint amounts to, measured from the files on disk."""

    files: int  # *.safetensors files
    tensors: int
    tensor_bytes: int  # sum of data_offsets spans over all headers
    apparent_bytes: int  # sum of file sizes (headers included)
    disk_bytes: int  # allocated blocks of every file in the folder


def checkpoint_stats(folder: Path) -> Stats:
    """Count tensors and bytes by reading only the safetensors headers."""
    tensors = tensor_bytes = apparent = 0
    shards = sorted(Path(folder).glob("*.safetensors"))
    for path in shards:
        with path.open("rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        tensors += len(header)
        tensor_bytes += sum(v["data_offsets"][1] - v["data_offsets"][0] for v in header.values())
        apparent += path.stat().st_size
    disk = sum(p.stat().st_blocks * 512 for p in Path(folder).iterdir() if p.is_file())
    return Stats(len(shards), tensors, tensor_bytes, apparent, disk)


def main(argv: list[str]) -> int:
    """Build both variants under OUT_DIR and print tensor counts, sizes and disk usage."""
    if len(argv) != 1:
        print("usage: python bench/sparse.py OUT_DIR", file=sys.stderr)
        return 2
    for variant in VARIANTS:
        folder = build_sparse_checkpoint(Path(argv[0]) / variant, variant)
        s = checkpoint_stats(folder)
        total = json.loads((folder / INDEX_FILE).read_text())["metadata"]["total_size"]
        print(
            f"{variant:6} {s.tensors} tensors in {s.files} files; tensor bytes {s.tensor_bytes:,} "
            f"({s.tensor_bytes / 1e9:.2f} GB, index total_size {total:,}); apparent {s.apparent_bytes / 1e9:.2f} GB; "
            f"on disk {s.disk_bytes / 1e6:.1f} MB  -> {folder}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
