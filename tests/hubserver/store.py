"""Storage behind the test Hub: one real bare git repository per repo, plus a sha256-keyed LFS object store."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import re
import shutil
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import git
from gitdb import IStream

LFS_SPEC = "version https://git-lfs.github.com/spec/v1"
LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub refuses regular files above 10 MiB, so they must go through LFS
ZERO_OID = "0" * 40
# The Hub's default .gitattributes (abridged); its initial commit holds it and preupload follows it.
_LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz",
    "*.zip", "*.zst", "*tfevents*",
)
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _LFS_PATTERNS)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


class HubError(Exception):
    """An error the server answers with: HTTP status, message and an optional X-Error-Code."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


@dataclass(frozen=True)
class Entry:
    """A file or directory of a commit's tree; for LFS files `size` is the real size, not the pointer's."""

    path: str
    kind: str  # "file" or "directory"
    oid: str  # git blob or tree sha1
    size: int = 0
    lfs_oid: str | None = None
    pointer_size: int | None = None


def lfs_pointer(oid: str, size: int) -> bytes:
    """The git-lfs pointer file stored in the git tree in place of an LFS file's content."""
    return f"{LFS_SPEC}\noid sha256:{oid}\nsize {size}\n".encode()


def parse_pointer(data: bytes) -> tuple[str, int] | None:
    """(sha256, size) if `data` is a git-lfs pointer file, else None."""
    match = re.fullmatch(rb"version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize (\d+)\n", data)
    return (match[1].decode(), int(match[2])) if match else None


def walk(tree: git.Tree) -> Iterator[git.Blob | git.Tree]:
    """Every blob and folder below `tree` (submodules skipped); gitpython's traverse() is loosely typed."""
    for obj in tree.traverse():
        if isinstance(obj, git.Blob | git.Tree):
            yield obj


def iso(when: datetime) -> str:
    """The Hub's timestamp format, which huggingface_hub's parse_datetime accepts."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def matches(patterns: Iterable[str], path: str, *, folders: bool = True) -> bool:
    """Gitignore-style match (slash-free patterns match any folder or basename); folders=False: gitattributes."""
    parts = path.split("/") if folders else path.split("/")[-1:]
    for raw in patterns:
        pattern = raw.strip().lstrip("/")
        if not pattern or pattern.startswith(("#", "!")):
            continue
        if pattern.endswith("/"):  # a folder pattern matches everything below that folder
            if folders and any(fnmatch.fnmatchcase(p, pattern.rstrip("/")) for p in parts[:-1]):
                return True
        elif "/" not in pattern:
            if any(fnmatch.fnmatchcase(p, pattern) for p in parts):
                return True
        elif fnmatch.fnmatchcase(path, pattern.replace("**/", "*").replace("/**", "/*")):
            return True
    return False


class LfsStore:
    """Content-addressed LFS objects under root/<sha[:2]>/<sha[2:4]>/<sha>, written atomically and verified."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, oid: str) -> Path:
        """Where object `oid` lives (whether or not it exists)."""
        if not re.fullmatch(r"[0-9a-f]{64}", oid):
            raise HubError(400, f"invalid LFS oid {oid!r}")
        return self.root / oid[:2] / oid[2:4] / oid

    def size(self, oid: str) -> int | None:
        """The stored object's size, or None when it is not stored."""
        path = self.path(oid)
        return path.stat().st_size if path.is_file() else None

    def has(self, oid: str, size: int | None = None) -> bool:
        """Whether the object is stored (with that size, when given)."""
        stored = self.size(oid)
        return stored is not None and (size is None or stored == size)

    def put(self, oid: str, size: int, chunks: Iterable[bytes]) -> None:
        """Store an upload, refusing it unless its length and sha256 are the announced ones."""
        target = self.path(oid)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{oid}.{threading.get_ident()}.part")
        digest, length = hashlib.sha256(), 0
        try:
            with tmp.open("wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    length += len(chunk)
                    out.write(chunk)
            if length != size or digest.hexdigest() != oid:
                raise HubError(400, f"upload does not match: got {length} bytes with sha256 {digest.hexdigest()}")
            os.replace(tmp, target)  # atomic: a reader never sees a half-written object
        finally:
            tmp.unlink(missing_ok=True)

    def all(self) -> set[str]:
        """Every stored sha256."""
        return {p.name for p in self.root.glob("??/??/*") if not p.name.startswith(".")}


class Store:
    """All repositories of the server. Each is a bare git repo; every access holds that repo's lock."""

    def __init__(self, root: Path, user: str) -> None:
        self.root, self.user = root, user
        self.lfs = LfsStore(root / "lfs")
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}
        self._repos: dict[str, git.Repo] = {}
        self._entries: dict[tuple[str, str], dict[str, Entry]] = {}  # commits never change, so cache forever
        self._lfs_patterns: dict[tuple[str, str], list[str]] = {}

    def path(self, repo_id: str) -> Path:
        """The bare repository's folder, root/<namespace>/<name>.git."""
        ns, _, name = repo_id.partition("/")
        if not (_NAME.fullmatch(ns) and _NAME.fullmatch(name)) or ".." in repo_id or name.endswith(".git"):
            raise HubError(400, f"invalid repo id {repo_id!r}")
        return self.root / ns / f"{name}.git"

    def exists(self, repo_id: str) -> bool:
        """Whether the repo has been created."""
        return (self.path(repo_id) / "HEAD").is_file()

    @contextmanager
    def repo(self, repo_id: str) -> Iterator[git.Repo]:
        """The open repository, exclusively (gitpython objects are not thread-safe); 404 RepoNotFound if absent."""
        with self._guard:
            lock = self._locks.setdefault(repo_id, threading.RLock())
        with lock:
            if not self.exists(repo_id):
                raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
            if repo_id not in self._repos:
                self._repos[repo_id] = git.Repo(self.path(repo_id))
            yield self._repos[repo_id]

    def close(self) -> None:
        """Stop the git helper processes gitpython keeps per open repo."""
        with self._guard:
            for repo in self._repos.values():
                repo.close()
            self._repos.clear()

    def create(self, repo_id: str, private: bool) -> bool:
        """Create the repo with the Hub's "initial commit" holding .gitattributes; False if it already exists."""
        with self._guard:
            lock = self._locks.setdefault(repo_id, threading.RLock())
        with lock:
            if self.exists(repo_id):
                return False
            repo = git.Repo.init(self.path(repo_id), bare=True, initial_branch="main")
            with repo.config_writer() as config:
                config.set_value("hub", "private", str(bool(private)).lower())
                config.set_value("hub", "createdAt", iso(datetime.now(UTC)))
            self._repos[repo_id] = repo
            tree = self._write_tree(repo, {".gitattributes": ("100644", self._blob(repo, DEFAULT_GITATTRIBUTES.encode()))})
            self._commit_tree(repo, "main", tree, None, "initial commit", "system")
            return True

    def delete(self, repo_id: str) -> None:
        """Remove the repo (its LFS objects stay, as they may be shared)."""
        with self.repo(repo_id) as repo:
            repo.close()
            del self._repos[repo_id]
            shutil.rmtree(self.path(repo_id))

    def settings(self, repo_id: str, private: bool | None = None) -> dict[str, object]:
        """Read (and optionally change) the repo's private flag and creation date."""
        with self.repo(repo_id) as repo:
            if private is not None:
                with repo.config_writer() as config:
                    config.set_value("hub", "private", str(private).lower())
            reader = repo.config_reader()
            return {
                "private": reader.get_value("hub", "private", "false") in (True, "true"),
                "createdAt": str(reader.get_value("hub", "createdAt", "")),
            }

    # -- revisions and refs -----------------------------------------------------------------------------------

    def refs(self, repo: git.Repo) -> tuple[dict[str, str], dict[str, str]]:
        """Branch → commit and tag → commit (annotated tags peeled)."""
        branches = {head.name: head.commit.hexsha for head in repo.branches}
        tags = {tag.name: tag.commit.hexsha for tag in repo.tags}
        return branches, tags

    def resolve(self, repo: git.Repo, revision: str) -> str:
        """A branch, tag, refs/heads/x, refs/tags/x, full commit id or unique prefix (≥ 7) → commit id."""
        branches, tags = self.refs(repo)
        for prefix, table in (("refs/heads/", branches), ("refs/tags/", tags), ("", branches), ("", tags)):
            if revision.startswith(prefix) and revision[len(prefix) :] in table:
                return table[revision[len(prefix) :]]
        if revision in (pulls := self.pull_refs(repo)):
            return pulls[revision]
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            try:
                return repo.git.rev_parse("--verify", "--quiet", f"{revision}^{{commit}}")
            except git.GitCommandError:
                pass
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def pull_refs(self, repo: git.Repo) -> dict[str, str]:
        """refs/pr/N → commit, for every pull request (open or not: the Hub keeps their refs)."""
        lines = repo.git.for_each_ref("--format=%(refname) %(objectname)", "refs/pr/").splitlines()
        return {name: oid for name, _, oid in (line.partition(" ") for line in lines)}

    def branch_name(self, repo: git.Repo, revision: str) -> str:
        """The branch a commit must go to; 404 RevisionNotFound if `revision` is not a branch."""
        name = revision.removeprefix("refs/heads/")
        if name not in self.refs(repo)[0]:
            raise HubError(404, f"Invalid rev id: {revision} (not a branch)", "RevisionNotFound")
        return name

    def create_ref(self, repo: git.Repo, kind: str, name: str, commit: str, message: str | None = None) -> None:
        """Create branch or tag `name` at `commit`; 409 if it exists, 400 if the name is not a valid ref."""
        ref = f"refs/{kind}/{name}"
        if name.startswith("refs/") or repo.git.check_ref_format(ref, with_exceptions=False, with_extended_output=True)[0]:
            raise HubError(400, f"Invalid {kind[:-1] if kind == 'heads' else 'tag'} name {name!r}")
        branches, tags = self.refs(repo)
        if name in (branches if kind == "heads" else tags):
            raise HubError(409, f"Reference {name} already exists")
        if kind == "tags" and message:  # an annotated tag, as the Hub makes when given a message
            repo.git.tag("-a", name, commit, "-m", message, env=self._identity(self.user))
        else:
            repo.git.update_ref(ref, commit, ZERO_OID)  # the zero old value: fails if someone created it meanwhile

    def delete_ref(self, repo: git.Repo, kind: str, name: str) -> None:
        """Delete a branch or tag; 404 RevisionNotFound if absent, 403 for main."""
        if kind == "heads" and name == "main":
            raise HubError(403, "The main branch cannot be deleted")
        if name not in self.refs(repo)[0 if kind == "heads" else 1]:
            raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
        repo.git.update_ref("-d", f"refs/{kind}/{name}")

    # -- reading trees ----------------------------------------------------------------------------------------

    def entries(self, repo: git.Repo, commit: str) -> dict[str, Entry]:
        """Every file and directory of a commit, by path, with LFS pointers resolved to their sha256 and size."""
        key = (str(repo.git_dir), commit)
        if key not in self._entries:
            found: dict[str, Entry] = {}
            for obj in walk(repo.commit(commit).tree):
                path = str(obj.path)
                if isinstance(obj, git.Tree):
                    found[path] = Entry(path, "directory", obj.hexsha)
                    continue
                size, pointer = obj.size, None
                if size < 1024:  # pointers are ~130 bytes; only small blobs can be one
                    pointer = parse_pointer(obj.data_stream.read())
                if pointer:
                    found[path] = Entry(path, "file", obj.hexsha, pointer[1], pointer[0], size)
                else:
                    found[path] = Entry(path, "file", obj.hexsha, size)
            self._entries[key] = dict(sorted(found.items()))
        return self._entries[key]

    def read(self, repo: git.Repo, entry: Entry) -> bytes:
        """A file's real content (from the LFS store for LFS files)."""
        if entry.lfs_oid:
            return self.lfs.path(entry.lfs_oid).read_bytes()
        return repo.odb.stream(bytes.fromhex(entry.oid)).read()

    def last_commit(self, repo: git.Repo, commit: str, path: str) -> dict[str, str]:
        """The newest commit at or before `commit` that touched `path` (for expand=true)."""
        line = repo.git.log("-1", "--format=%H%x00%s%x00%aI", commit, "--", path)
        oid, title, date = line.split("\x00")
        return {"id": oid, "title": title, "date": iso(datetime.fromisoformat(date))}

    def log(self, repo: git.Repo, commit: str) -> list[dict[str, object]]:
        """Commits reachable from `commit`, newest first, as the Hub's commits API lists them."""
        out: list[dict[str, object]] = []
        for c in repo.iter_commits(commit):
            title, _, body = str(c.message).rstrip("\n").partition("\n\n")
            out.append({"id": c.hexsha, "title": title, "message": body, "date": iso(c.authored_datetime),
                        "authors": [{"user": c.author.name}]})
        return out

    def upload_mode(self, repo: git.Repo, commit: str, path: str, size: int, sample: bytes) -> str:
        """The Hub's rule: LFS if .gitattributes says so, the file is over 10 MiB, or it looks binary (a NUL byte)."""
        key = (str(repo.git_dir), commit)
        if key not in self._lfs_patterns:  # parsed once per commit, not once per file of a 256-file preupload
            attrs = self.entries(repo, commit).get(".gitattributes")
            lines = self.read(repo, attrs).decode(errors="replace").splitlines() if attrs else []
            self._lfs_patterns[key] = [words[0] for words in map(str.split, lines) if "filter=lfs" in words[1:]]
        lfs = size > LFS_THRESHOLD or matches(self._lfs_patterns[key], path, folders=False) or b"\0" in sample
        return "lfs" if lfs else "regular"

    # -- writing ----------------------------------------------------------------------------------------------

    def commit(self, repo: git.Repo, branch: str, ops: list[tuple[str, str, object]], *, summary: str,
               description: str, parent: str | None) -> str:
        """Apply add/lfs/delete ops to the branch head and move the branch with compare-and-swap; the new commit.

        ops are ("file", path, bytes), ("lfsFile", path, (sha256, size)), ("deletedFile", path, None) or
        ("deletedFolder", path, None). A stale `parent` gives 412, as on the Hub.
        """
        head = self.refs(repo)[0][branch]
        if parent and parent != head:
            raise HubError(412, f"A commit has happened since. Please refresh and try again. (head is {head})")
        message = f"{summary}\n\n{description}" if description else summary
        return self._commit_tree(repo, branch, self.tree_after(repo, head, ops), head, message, self.user)

    def tree_after(self, repo: git.Repo, base: str, ops: list[tuple[str, str, object]]) -> str:
        """The tree of commit `base` with the commit ops applied (written to the object store, no ref moved)."""
        files = {str(o.path): (f"{o.mode:o}", o.binsha) for o in walk(repo.commit(base).tree) if o.type == "blob"}
        for kind, path, value in ops:
            path = path.strip("/")
            if kind == "file":
                files[path] = ("100644", self._blob(repo, cast(bytes, value)))
            elif kind == "lfsFile":
                oid, size = cast(tuple[str, int | None], value)
                stored = self.lfs.size(oid)
                if stored is None or (size is not None and stored != size):
                    raise HubError(422, f"LFS object {oid} for {path} was never uploaded")
                files[path] = ("100644", self._blob(repo, lfs_pointer(oid, stored)))
            elif kind == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif kind == "deletedFolder":
                doomed = [p for p in files if p.startswith(f"{path}/")]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"unsupported commit operation {kind!r}")
        return self._write_tree(repo, files)

    def _blob(self, repo: git.Repo, data: bytes) -> bytes:
        """Store a blob (like `git hash-object -w`); its binary sha1."""
        return repo.odb.store(IStream("blob", len(data), io.BytesIO(data))).binsha

    def _write_tree(self, repo: git.Repo, files: dict[str, tuple[str, bytes]]) -> str:
        """Write nested tree objects for a flat path → (mode, blob sha) map, without an index (like `git mktree`)."""
        root: dict[str, Any] = {}
        for path, leaf in files.items():
            *folders, name = path.split("/")
            node = root
            for folder in folders:
                node = node.setdefault(folder, {})
                if not isinstance(node, dict):
                    raise HubError(400, f"{path}: a file is in the way of this folder")
            if isinstance(node.get(name), dict):
                raise HubError(400, f"{path}: a folder of that name exists")
            node[name] = leaf

        def write(node: dict[str, Any]) -> bytes:
            """Store one folder's tree object (children first); its binary sha1."""
            items = []
            for name, value in node.items():
                if isinstance(value, dict):
                    items.append((name + "/", b"40000", name, write(value)))  # git sorts folders as "name/"
                else:
                    items.append((name, value[0].encode(), name, value[1]))
            items.sort(key=lambda item: item[0].encode())
            data = b"".join(mode + b" " + name.encode() + b"\0" + sha for _, mode, name, sha in items)
            return repo.odb.store(IStream("tree", len(data), io.BytesIO(data))).binsha

        return write(root).hex()

    def _commit_tree(self, repo: git.Repo, branch: str, tree: str, parent: str | None, message: str, author: str) -> str:
        """`git commit-tree`, then `git update-ref` with the old head so a concurrent move makes it fail (412)."""
        return self.write_commit(repo, f"refs/heads/{branch}", tree, [parent] if parent else [], message, author,
                                 expected=parent or ZERO_OID)

    def write_commit(self, repo: git.Repo, ref: str, tree: str, parents: list[str], message: str, author: str, *,
                     expected: str) -> str:
        """Commit `tree` and point `ref` (any full ref name) at it, only if `ref` still holds `expected`."""
        args = [tree, *(arg for parent in parents for arg in ("-p", parent)), "-m", message]
        commit = repo.git.commit_tree(*args, env=self._identity(author))
        try:
            repo.git.update_ref(ref, commit, expected)
        except git.GitCommandError:
            raise HubError(412, "A commit has happened since. Please refresh and try again.") from None
        return commit

    @staticmethod
    def _identity(name: str) -> dict[str, str]:
        """Author and committer for git commands (the bare repos have no user config)."""
        email = f"{name}@users.noreply.huggingface.co"
        return {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email,
                "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
