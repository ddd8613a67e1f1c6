"""The local side of a push: which files are refused before any request, decided by content, at any size."""

from __future__ import annotations

from pathlib import Path

import pytest

from publish.errors import UnsafeFileError
from publish.hub import localfiles
from publish.hub.localfiles import contains_token, is_weight_file, refuse_unsafe

from .hubserver import HubServer

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


def test_a_gguf_file_is_weights_by_its_magic(tmp_path: Path) -> None:
    blob = tmp_path / "model.gguf"
    blob.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + TOKEN.encode())
    assert is_weight_file(blob)
    refuse_unsafe(blob, tmp_path)


def test_a_clean_scan_is_remembered_until_the_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from publish.hub.hashcache import HashCache

    cache = HashCache(tmp_path / "hashes.json")
    log = tmp_path / "log.txt"
    log.write_text("step 1 ok\n")
    refuse_unsafe(log, tmp_path, cache)
    cache.save()
    scans: list[Path] = []
    real = localfiles.find_token
    monkeypatch.setattr(localfiles, "find_token", lambda path: scans.append(path) or real(path))
    refuse_unsafe(log, tmp_path, HashCache(tmp_path / "hashes.json"))
    assert scans == []  # same size, mtime and inode: not read again
    log.write_text(f"step 1 ok\nHF_TOKEN={TOKEN}\n")
    with pytest.raises(UnsafeFileError):
        refuse_unsafe(log, tmp_path, HashCache(tmp_path / "hashes.json"))
    assert scans == [log]


# -- where the token is: a 5 MB log names its line, a binary file its byte offset ---------------------------------


def test_a_token_in_a_large_log_is_placed_by_line_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localfiles, "SCAN_CHUNK", 1000)
    log = tmp_path / "log.txt"
    lines = [f"step {n} loss 0.{n:04d}" for n in range(1, 5000)]
    lines[4321] = f"export HF_TOKEN={TOKEN}"  # line 4322, far past the first chunk
    log.write_text("\n".join(lines) + "\n")
    found = localfiles.find_token(log)
    assert found is not None and found.line == 4322
    assert log.read_bytes()[found.offset:].startswith(TOKEN.encode())
    with pytest.raises(UnsafeFileError) as caught:
        refuse_unsafe(log, tmp_path)
    assert str(caught.value).splitlines() == [
        f"{log}:4322: contains something that looks like a Hugging Face token; hubpub never uploads it",
        ("  hint: remove the token from the file (and revoke it if it was ever shared), or list the file in the "
        "variant's `exclude:`"),
    ]


def test_a_token_in_a_binary_file_is_placed_by_byte_offset(tmp_path: Path) -> None:
    blob = tmp_path / "optimizer.bin"
    blob.write_bytes(b"\x80\x04\x00" * 700 + TOKEN.encode() + b"\x00")
    with pytest.raises(UnsafeFileError) as caught:
        refuse_unsafe(blob, tmp_path)
    assert str(caught.value).startswith(f"{blob} (at byte offset 2,100): contains something that looks like a")
    assert TOKEN not in str(caught.value)


def test_push_names_the_line_of_a_token_in_a_5_mb_log(weighed: Path, hub: HubServer) -> None:
    from .test_push import commits, hubpub_cli, uploads

    log = weighed.parent / "log.txt"
    log.write_text("step ok, loss 0.1234\n" * 250_000 + f"HF_TOKEN={TOKEN}\n" + "done\n")
    assert log.stat().st_size > 5_000_000
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-2:] == [
        (f"error: {log.resolve()}:250001: contains something that looks like a Hugging Face token; hubpub never "
        "uploads it"),
        ("  hint: remove the token from the file (and revoke it if it was ever shared), or list the file in the "
        "variant's `exclude:`"),
    ]
    assert TOKEN not in done.stdout + done.stderr and not uploads(hub) and not commits(hub)
