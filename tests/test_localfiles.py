"""The local side of a push: which files are refused before any request, decided by content, at any size."""

from __future__ import annotations

from pathlib import Path

import pytest

from publish import localfiles
from publish.errors import UnsafeFileError
from publish.localfiles import contains_token, is_weight_file, refuse_unsafe

TOKEN = "hf_" + "Leaked" * 5 + "0123456789"  # built from parts: no token-shaped string is committed


def tiny_safetensors(path: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(path))
    return path


def test_a_token_split_across_two_chunks_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localfiles, "SCAN_CHUNK", 64)
    log = tmp_path / "log.txt"
    log.write_text("x" * 50 + TOKEN + "\n")  # the token straddles bytes 64
    assert contains_token(log)


def test_a_clean_large_file_is_not_a_token(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_bytes(b"hf_short step 1\n" * 300_000)
    assert not contains_token(log)


def test_a_safetensors_file_is_recognised_by_its_header(tmp_path: Path) -> None:
    assert is_weight_file(tiny_safetensors(tmp_path / "model.safetensors"))
    fake = tmp_path / "notes.safetensors"
    fake.write_text(f"renamed text {TOKEN}\n")
    assert not is_weight_file(fake)
    with pytest.raises(UnsafeFileError, match="looks like a Hugging Face token"):
        refuse_unsafe(fake, tmp_path)


def test_weights_are_not_scanned_and_text_of_any_name_is(tmp_path: Path) -> None:
    refuse_unsafe(tiny_safetensors(tmp_path / "model.safetensors"), tmp_path)
    data = tmp_path / "extra.bin"
    data.write_bytes(b"\x00\x01" * 1000 + TOKEN.encode())
    with pytest.raises(UnsafeFileError):
        refuse_unsafe(data, tmp_path)
