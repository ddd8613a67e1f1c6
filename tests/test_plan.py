"""Planning a push is pure: local files against remote files, decided by the Hub's own content identity."""

from __future__ import annotations

from publish.hub.hashcache import digest_bytes
from publish.hub.plan import ADD, DELETE, KEEP, UNCHANGED, UPDATE, LocalFile, RemoteFile, make_plan


def local(path: str, data: bytes) -> LocalFile:
    d = digest_bytes(data)
    return LocalFile(path, d.size, d.sha256, d.git_oid, content=data)


def regular(path: str, data: bytes) -> RemoteFile:
    d = digest_bytes(data)
    return RemoteFile(path, d.size, d.git_oid or "")


def lfs(path: str, data: bytes) -> RemoteFile:
    d = digest_bytes(data)
    return RemoteFile(path, d.size, "pointer-oid", lfs_sha256=d.sha256)


def plan(local_files: list[LocalFile], remote: list[RemoteFile], **kwargs: object):  # type: ignore[no-untyped-def]
    return make_plan("ns/m", "gs128", local_files, remote, parent_commit="abc", repo_exists=True,
                     branch_exists=True, **kwargs)  # type: ignore[arg-type]


def actions(p) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {c.path: c.action for c in p.changes}


def test_new_files_are_added() -> None:
    assert actions(plan([local("config.json", b"{}")], [])) == {"config.json": ADD}


def test_regular_file_with_the_same_git_blob_id_is_unchanged() -> None:
    assert actions(plan([local("config.json", b"{}")], [regular("config.json", b"{}")])) == {"config.json": UNCHANGED}


def test_lfs_file_with_the_same_sha256_is_unchanged() -> None:
    p = plan([local("model.safetensors", b"w" * 100)], [lfs("model.safetensors", b"w" * 100)])
    assert actions(p) == {"model.safetensors": UNCHANGED}
    assert p.is_noop and p.upload_bytes == 0


def test_changed_content_of_the_same_size_is_an_update() -> None:
    p = plan([local("model.safetensors", b"a" * 100)], [lfs("model.safetensors", b"b" * 100)])
    assert actions(p) == {"model.safetensors": UPDATE}
    assert p.upload_bytes == 100


def test_stale_weight_files_are_deleted() -> None:
    p = plan([local("model-00001-of-00001.safetensors", b"x")],
             [lfs("model-00001-of-00002.safetensors", b"y"), regular("model.safetensors.index.json", b"{}")])
    assert actions(p)["model-00001-of-00002.safetensors"] == DELETE
    assert actions(p)["model.safetensors.index.json"] == DELETE


def test_other_remote_files_are_kept_unless_pruned() -> None:
    remote = [regular("notes.md", b"n")]
    assert actions(plan([], remote)) == {"notes.md": KEEP}
    assert actions(plan([], remote, prune=True)) == {"notes.md": DELETE}


def test_gitattributes_is_never_deleted() -> None:
    assert actions(plan([], [regular(".gitattributes", b"*.bin filter=lfs")], prune=True)) == {}


def test_card_only_plan_never_deletes_remote_weights() -> None:
    p = plan([local("README.md", b"card")], [lfs("model.safetensors", b"w")], card_only=True, prune=True)
    assert actions(p) == {"README.md": ADD, "model.safetensors": KEEP}
    assert "card-only: the weights are not on this machine" in p.format_table()


def test_plan_table_lists_every_file_and_the_total_to_upload() -> None:
    p = plan([local("README.md", b"x" * 1500), local("config.json", b"{}")], [regular("config.json", b"{}")])
    table = p.format_table(verbose=True)
    assert "add       README.md" in table and "1.5 KB" in table
    assert "unchanged config.json" in table
    assert "  unchanged 1 file (-v lists them)" in p.format_table().splitlines()
    assert "1 add, 0 update, 0 delete, 1 unchanged, 0 keep; 1.5 KB to upload" in table


def unhashed(path: str, data: bytes) -> LocalFile:
    return LocalFile(path, len(data), None, None, content=data)


def test_a_first_push_is_planned_before_any_file_is_hashed() -> None:
    asked: list[str] = []

    def digest(file: LocalFile) -> LocalFile:
        asked.append(file.path)
        return local(file.path, file.content or b"")

    planned = plan([unhashed("a.safetensors", b"xx"), unhashed("b.bin", b"yyy")], [lfs("b.bin", b"zz")],
                   digest=digest)
    assert actions(planned) == {"a.safetensors": ADD, "b.bin": UPDATE} and asked == []  # sizes decide


def test_only_a_file_the_revision_holds_at_the_same_size_is_hashed_to_plan() -> None:
    asked: list[str] = []

    def digest(file: LocalFile) -> LocalFile:
        asked.append(file.path)
        return local(file.path, file.content or b"")

    planned = plan([unhashed("same.bin", b"abc"), unhashed("edited.bin", b"abd"), unhashed("new.bin", b"n")],
                   [lfs("same.bin", b"abc"), lfs("edited.bin", b"abc")], digest=digest)
    assert actions(planned) == {"same.bin": UNCHANGED, "edited.bin": UPDATE, "new.bin": ADD}
    assert sorted(asked) == ["edited.bin", "same.bin"]
