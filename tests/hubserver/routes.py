"""The Hub routes huggingface_hub 2.4.0 calls, answered from the git-backed Store (see hub-protocol.md §4)."""

from __future__ import annotations

import base64
import hmac
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import parse_qs, urlencode

from . import pulls
from .store import Entry, HubError, iso, matches

if TYPE_CHECKING:
    import git

    from .server import Handler, HubServer

BASE_MODEL_RELATIONS = {"adapter", "merge", "quantized", "finetune"}  # the values the Hub documents
_FRONT_MATTER = re.compile(r"^\s*---[\r\n]+([\S\s]*?)[\r\n]+---(\r\n|\n|$)")


class Reply(NamedTuple):
    """What a route answers: status, headers and a body (bytes, or (file, start, length) to stream)."""

    status: int
    headers: dict[str, str]
    body: bytes | tuple[Path, int, int]


def json_reply(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer."""
    return Reply(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode())


def b64decode(value: str) -> bytes:
    """Strict base64, turning garbage into a 400."""
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise HubError(400, "invalid base64 content") from None


def _true(values: list[str] | None) -> bool:
    """A query/form boolean as the client sends it ("true"/"false", "1")."""
    return bool(values) and values[0].lower() in ("true", "1")  # type: ignore[index]


def front_matter(text: str) -> dict | None:
    """A README's YAML metadata, or None if it has none or it does not parse (or PyYAML is missing)."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return None
    try:
        import yaml
    except ImportError:
        return None
    try:
        data = yaml.safe_load(match[1])
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


class Routes:
    """One request's dispatch: path segments (already unquoted one by one) → the matching route method."""

    def __init__(self, handler: Handler, hub: HubServer) -> None:
        self.h, self.hub, self.store = handler, hub, hub.store
        # Build every URL we hand out from the Host the client used, so it lies under the client's endpoint.
        self.base = f"http://{handler.headers.get('Host')}" if handler.headers.get("Host") else hub.url

    def dispatch(self) -> Reply:
        """Find and run the route, or 404."""
        seg, method = self.h.segments, self.h.command
        if seg[:1] == ["api"]:
            return self._api(seg[1:], method)
        if seg == ["oauth", "token"] and method == "POST":
            status, answer = self.hub.oidc.exchange(self.h.json_body(), audience=self.base)
            return json_reply(answer, status)
        if seg[:1] == ["_lfs"] and len(seg) == 4 and method == "PUT":
            return self.lfs_put(seg[1], int(seg[2]) if seg[2].isdigit() else -1, seg[3])
        if len(seg) >= 5 and seg[1].endswith(".git") and seg[2:4] == ["info", "lfs"]:
            repo_id = f"{seg[0]}/{seg[1].removesuffix('.git')}"
            if seg[4:] == ["objects", "batch"] and method == "POST":
                return self.lfs_batch(repo_id)
            if seg[4:] == ["verify"] and method == "POST":
                return self.lfs_verify(repo_id)
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            return self.resolve(f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
        raise HubError(404, f"no route for {method} {self.h.raw_path}")

    def _api(self, seg: list[str], method: str) -> Reply:
        """Routes under /api/: account-level ones, then /api/models/{ns}/{name}/{action}/{revision...}."""
        simple = {
            ("GET", "whoami-v2"): self.whoami,
            ("POST", "validate-yaml"): self.validate_yaml,
            ("GET", "agent-harnesses"): lambda: json_reply({"standardEnvVars": [], "harnesses": {}}),
            ("POST", "repos/create"): self.create_repo,
            ("DELETE", "repos/delete"): self.delete_repo,
        }
        if (method, "/".join(seg)) in simple:
            return simple[(method, "/".join(seg))]()
        if len(seg) < 3 or seg[0] != "models":
            raise HubError(404, "only model repositories are served", "RepoNotFound")
        repo_id, action, rest = f"{seg[1]}/{seg[2]}", (seg[3] if len(seg) > 3 else ""), seg[4:]
        rev = "/".join(rest)  # revisions arrive fully quoted, but tolerate a literal "/" too
        routes = {
            ("GET", ""): lambda: self.info(repo_id, "main"),
            ("GET", "revision"): lambda: self.info(repo_id, rev),
            ("GET", "refs"): lambda: self.refs(repo_id),
            ("POST", "branch"): lambda: self.create_ref(repo_id, "heads", rev),
            ("DELETE", "branch"): lambda: self.delete_ref(repo_id, "heads", rev),
            ("POST", "tag"): lambda: self.create_ref(repo_id, "tags", rev),
            ("DELETE", "tag"): lambda: self.delete_ref(repo_id, "tags", rev),
            ("GET", "commits"): lambda: self.commits(repo_id, rev),
            ("POST", "preupload"): lambda: self.preupload(repo_id, rev),
            ("POST", "commit"): lambda: self.commit(repo_id, rev),
            ("GET", "tree"): lambda: self.tree(repo_id, rest[0] if rest else "main", "/".join(rest[1:])),
            ("POST", "paths-info"): lambda: self.paths_info(repo_id, rev),
            ("PUT", "settings"): lambda: self.settings(repo_id),
            ("GET", "discussions"): lambda: pulls.answer(self, method, repo_id, rest),
            ("POST", "discussions"): lambda: pulls.answer(self, method, repo_id, rest),
        }
        if (method, action) in routes:
            return routes[(method, action)]()
        if action == "xet-write-token":
            raise HubError(501, "Xet is not supported by this server: set HF_HUB_DISABLE_XET=1")
        raise HubError(404, f"no route for {method} {self.h.raw_path}")

    # -- account and repositories -----------------------------------------------------------------------------

    def whoami(self) -> Reply:
        """The token's owner."""
        issued = self.hub.oidc.identity(self.h.headers.get("Authorization", ""))
        if issued is not None:
            return json_reply(self.hub.oidc.whoami(issued))
        user = self.hub.user
        return json_reply({
            "type": "user", "id": user, "name": user, "fullname": user, "email": f"{user}@example.invalid",
            "emailVerified": True, "canPay": False, "isPro": False, "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"displayName": "hubserver", "role": self.hub.token_role}},
        })

    def validate_yaml(self) -> Reply:
        """Check a README's metadata like the Hub does (parses, is a mapping, known base_model_relation)."""
        content = str(self.h.json_body().get("content", ""))
        errors = []
        if _FRONT_MATTER.match(content):
            data = front_matter(content)
            if data is None:
                errors.append({"message": "YAML metadata is not a valid mapping"})
            elif data.get("base_model_relation", "quantized") not in BASE_MODEL_RELATIONS:
                errors.append({"message": f'"base_model_relation" must be one of {sorted(BASE_MODEL_RELATIONS)}'})
        return json_reply({"errors": errors, "warnings": []}, 400 if errors else 200)

    def create_repo(self) -> Reply:
        """Create a model repo; 409 with `url` when it exists (the client reads `url` even then)."""
        body = self.h.json_body()
        if body.get("type") not in (None, "model"):
            raise HubError(400, "only model repositories are supported")
        repo_id = f"{body.get('organization') or self.hub.user}/{body.get('name')}"
        private = body.get("visibility") == "private" or bool(body.get("private"))
        url = f"{self.base}/{repo_id}"
        if not self.store.create(repo_id, private):
            return json_reply({"error": "You already created this model repo", "url": url}, 409)
        return json_reply({"url": url, "name": repo_id, "id": repo_id})

    def delete_repo(self) -> Reply:
        """Delete a repo."""
        body = self.h.json_body()
        self.store.delete(f"{body.get('organization') or self.hub.user}/{body.get('name')}")
        return json_reply({})

    def settings(self, repo_id: str) -> Reply:
        """Update the private flag."""
        private = self.h.json_body().get("private")
        return json_reply(self.store.settings(repo_id, None if private is None else bool(private)))

    def info(self, repo_id: str, revision: str) -> Reply:
        """model_info / repo_info: sha, siblings (with sizes and LFS data when blobs=true), card data."""
        blobs = _true(self.h.params.get("blobs"))
        with self.store.repo(repo_id) as repo:
            sha = self.store.resolve(repo, revision)
            entries = self.store.entries(repo, sha)
            settings = self.store.settings(repo_id)
            siblings = []
            for e in (e for e in entries.values() if e.kind == "file"):
                sibling: dict[str, object] = {"rfilename": e.path}
                if blobs:
                    sibling.update(size=e.size, blobId=e.oid)
                    if e.lfs_oid:
                        sibling["lfs"] = {"sha256": e.lfs_oid, "size": e.size, "pointerSize": e.pointer_size}
                siblings.append(sibling)
            readme = entries.get("README.md")
            card = front_matter(self.store.read(repo, readme).decode(errors="replace")) if readme else None
            modified = iso(repo.commit(sha).committed_datetime)
        data: dict[str, object] = {
            "_id": repo_id, "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0], "sha": sha,
            "lastModified": modified, "createdAt": settings["createdAt"] or modified, "private": settings["private"],
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [], "siblings": siblings,
            "usedStorage": sum(e.size for e in entries.values()),
        }
        if card is not None:
            data["cardData"] = card
            data["tags"] = list(card.get("tags") or [])
            for key in ("pipeline_tag", "library_name"):
                if key in card:
                    data[key] = card[key]
        return json_reply(data)

    # -- refs and history -------------------------------------------------------------------------------------

    def refs(self, repo_id: str) -> Reply:
        """list_repo_refs: branches, tags and converts are always present."""
        with self.store.repo(repo_id) as repo:
            branches, tags = self.store.refs(repo)
        data: dict[str, list] = {
            "branches": [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(branches.items())],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(tags.items())],
            "converts": [],
        }
        if _true(self.h.params.get("include_prs")):
            data["pullRequests"] = self.hub.pulls.refs(repo_id)
        return json_reply(data)

    def create_ref(self, repo_id: str, kind: str, name: str) -> Reply:
        """create_branch (startingPoint: any revision, default main) or create_tag (URL names the revision)."""
        body = self.h.json_body()
        with self.store.repo(repo_id) as repo:
            if kind == "heads":
                start = self.store.resolve(repo, str(body.get("startingPoint") or "main"))
                self.store.create_ref(repo, "heads", name, start)
            else:
                tag = str(body.get("tag") or "")
                self.store.create_ref(repo, "tags", tag, self.store.resolve(repo, name), body.get("message"))
        return json_reply({})

    def delete_ref(self, repo_id: str, kind: str, name: str) -> Reply:
        """delete_branch / delete_tag."""
        with self.store.repo(repo_id) as repo:
            self.store.delete_ref(repo, kind, name)
        return json_reply({})

    def commits(self, repo_id: str, revision: str) -> Reply:
        """list_repo_commits, newest first, paginated."""
        with self.store.repo(repo_id) as repo:
            items = self.store.log(repo, self.store.resolve(repo, revision))
        start, size = self._cursor(), self.hub.page_size or 50
        return self._page(items[start : start + size], len(items), start, size)

    def _cursor(self) -> int:
        """Where the requested page starts (our Link URLs carry ?cursor=N)."""
        value = self.h.params.get("cursor", ["0"])[0]
        return int(value) if value.isdigit() else 0

    def _page(self, page: list, total: int, start: int, size: int) -> Reply:
        """One page, with a Link rel="next" header that carries every query parameter (the client adds none)."""
        headers = {}
        if start + size < total:
            params = [(k, v) for k, vs in self.h.params.items() for v in vs if k != "cursor"]
            url = f"{self.base}{self.h.raw_path}?{urlencode([*params, ('cursor', start + size)])}"
            headers["Link"] = f'<{url}>; rel="next"'
        return json_reply(page, headers=headers)

    # -- files ----------------------------------------------------------------------------------------------

    def _item(self, repo: git.Repo, commit: str, entry: Entry, expand: bool) -> dict[str, object]:
        """A tree / paths-info item; for LFS files `size` is the real size and `lfs.oid` the sha256."""
        item: dict[str, object] = {"type": entry.kind, "oid": entry.oid, "size": entry.size, "path": entry.path}
        if entry.lfs_oid:
            item["lfs"] = {"oid": entry.lfs_oid, "size": entry.size, "pointerSize": entry.pointer_size}
        if expand:
            item["lastCommit"] = self.store.last_commit(repo, commit, entry.path)
        return item

    def tree(self, repo_id: str, revision: str, path: str) -> Reply:
        """list_repo_tree: a folder's children (or everything below it with recursive=true), paginated."""
        recursive, expand = _true(self.h.params.get("recursive")), _true(self.h.params.get("expand"))
        path = path.strip("/")
        with self.store.repo(repo_id) as repo:
            commit = self.store.resolve(repo, revision)
            entries = self.store.entries(repo, commit)
            if path and (path not in entries or entries[path].kind != "directory"):
                raise HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
            prefix = f"{path}/" if path else ""
            chosen = [
                e for p, e in entries.items()
                if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])
            ]
            start, size = self._cursor(), self.hub.page_size or (50 if expand else 1000)  # the Hub's page sizes
            # Only the returned page gets items built: with expand each costs a `git log`.
            page = [self._item(repo, commit, e, expand) for e in chosen[start : start + size]]
        return self._page(page, len(chosen), start, size)

    def paths_info(self, repo_id: str, revision: str) -> Reply:
        """get_paths_info: form-encoded (or JSON) `paths` and `expand`; unknown paths are left out."""
        raw = self.h.body()
        if "json" in self.h.headers.get("Content-Type", ""):
            data = json.loads(raw or b"{}")
            paths, expand = list(data.get("paths") or []), bool(data.get("expand"))
        else:
            form = parse_qs(raw.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), _true(form.get("expand"))
        with self.store.repo(repo_id) as repo:
            commit = self.store.resolve(repo, revision)
            entries = self.store.entries(repo, commit)
            found = [entries[p.strip("/")] for p in paths if p.strip("/") in entries]
            return json_reply([self._item(repo, commit, e, expand) for e in found])

    def resolve(self, repo_id: str, revision: str, path: str) -> Reply:
        """Download a file (HEAD or GET, with Range); LFS content comes from the object store."""
        with self.store.repo(repo_id) as repo:
            commit = self.store.resolve(repo, revision)
            entry = self.store.entries(repo, commit).get(path)
            if entry is None or entry.kind != "file":
                error = HubError(404, f"{path} does not exist on {revision}", "EntryNotFound")
                return self.h.error_reply(error, {"X-Repo-Commit": commit})
            content = None if entry.lfs_oid else self.store.read(repo, entry)
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", "X-Repo-Commit": commit,
                   "ETag": f'"{entry.lfs_oid or entry.oid}"'}
        if entry.lfs_oid:
            headers.update({"X-Linked-Etag": f'"{entry.lfs_oid}"', "X-Linked-Size": str(entry.size)})
        start, length, status = 0, entry.size, 200
        wanted = re.fullmatch(r"bytes=(\d*)-(\d*)", self.h.headers.get("Range", "").strip())
        if wanted and (wanted[1] or wanted[2]):  # anything else (multi-range, garbage) is ignored, per RFC 9110
            if wanted[1]:
                start, end = int(wanted[1]), min(int(wanted[2]) if wanted[2] else entry.size - 1, entry.size - 1)
            else:
                start, end = max(0, entry.size - int(wanted[2])), entry.size - 1
            if start >= entry.size or end < start:
                headers["Content-Range"] = f"bytes */{entry.size}"
                return Reply(416, headers, b"")
            length, status = end - start + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
        if content is not None:
            return Reply(status, headers, content[start : start + length])
        return Reply(status, headers, (self.store.lfs.path(entry.lfs_oid), start, length))  # type: ignore[arg-type]

    # -- uploads ----------------------------------------------------------------------------------------------

    def preupload(self, repo_id: str, revision: str) -> Reply:
        """Upload mode (lfs/regular), shouldIgnore (the client's gitIgnore) and the remote oid of each path."""
        body = self.h.json_body()
        ignore = str(body.get("gitIgnore") or "").splitlines()
        answers = []
        with self.store.repo(repo_id) as repo:
            commit = self.store.resolve(repo, revision)
            entries = self.store.entries(repo, commit)
            for file in body.get("files") or []:
                path, sample = str(file["path"]), b64decode(str(file.get("sample") or ""))
                existing = entries.get(path)
                answers.append({
                    "path": path,
                    "uploadMode": self.store.upload_mode(repo, commit, path, int(file.get("size") or 0), sample),
                    "shouldIgnore": matches(ignore, path),
                    # sha256 for LFS files, git blob sha1 otherwise: equal to the client's local oid = unchanged.
                    "oid": (existing.lfs_oid or existing.oid) if existing and existing.kind == "file" else None,
                })
        return json_reply({"files": answers, "commitOid": commit})

    def commit(self, repo_id: str, revision: str) -> Reply:
        """The NDJSON commit: header, file, lfsFile, deletedFile, deletedFolder; 412 on a stale parentCommit."""
        header: dict = {}
        ops: list[tuple[str, str, object]] = []
        for line in self.h.body().splitlines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
            except (ValueError, KeyError, TypeError):
                raise HubError(400, "malformed NDJSON commit payload") from None
            if key == "header":
                header = value
            elif key == "file":
                ops.append(("file", value["path"], b64decode(value["content"])))
            elif key == "lfsFile":
                if value.get("algo", "sha256") != "sha256":
                    raise HubError(400, f"unsupported LFS algo {value.get('algo')!r}")
                ops.append(("lfsFile", value["path"], (value["oid"], value.get("size"))))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append((key, value["path"], None))
            else:
                raise HubError(400, f"unsupported commit operation {key!r}")
        if not header.get("summary"):
            raise HubError(400, "the commit needs a summary")
        if _true(self.h.params.get("create_pr")):  # a pull request against the branch: refs/pr/N, the branch stays
            num, oid = self.hub.pulls.create(repo_id, revision, ops, summary=header["summary"],
                                             description=header.get("description") or "",
                                             parent=header.get("parentCommit"))
            return json_reply({"commitUrl": f"{self.base}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True,
                               "commitMessage": header["summary"],
                               "pullRequestUrl": f"{self.base}/{repo_id}/discussions/{num}"})
        with self.store.repo(repo_id) as repo:
            branch = self.store.branch_name(repo, revision)
            oid = self.store.commit(repo, branch, ops, summary=header["summary"],
                                    description=header.get("description") or "", parent=header.get("parentCommit"))
        return json_reply({"commitUrl": f"{self.base}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True,
                           "commitMessage": header["summary"], "pullRequestUrl": None})

    def lfs_batch(self, repo_id: str) -> Reply:
        """LFS batch (upload): stored objects get no actions (no PUT follows); others a signed upload URL."""
        body = self.h.json_body()
        if body.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        with self.store.repo(repo_id):
            pass  # 404 RepoNotFound for unknown repos
        objects = []
        for obj in body.get("objects") or []:
            oid, size = str(obj.get("oid")), obj.get("size")
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "invalid oid or size"}})
            elif self.store.lfs.has(oid, size):
                objects.append({"oid": oid, "size": size})
            else:
                cap = self.hub.upload_capability(oid, size)
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                    "upload": {"href": f"{self.base}/_lfs/{oid}/{size}/{cap}"},
                    "verify": {"href": f"{self.base}/{repo_id}.git/info/lfs/verify"},
                }})
        reply = json_reply({"transfer": "basic", "objects": objects})
        reply.headers["Content-Type"] = "application/vnd.git-lfs+json"
        return reply

    def lfs_put(self, oid: str, size: int, capability: str) -> Reply:
        """The upload URL: no auth header, so the URL itself is the credential; content is checked on arrival."""
        if size < 0 or not hmac.compare_digest(capability, self.hub.upload_capability(oid, size)):
            raise HubError(403, "invalid upload URL")
        if self.store.lfs.has(oid, size):
            self.h.body()
        else:
            self.store.lfs.put(oid, size, self.h.body_chunks())
        return json_reply({}, headers={"ETag": f'"{oid}"'})

    def lfs_verify(self, repo_id: str) -> Reply:
        """LFS verify: 200 if the object is stored with that size, else 404."""
        body = self.h.json_body()
        if not self.store.lfs.has(str(body.get("oid")), body.get("size")):
            raise HubError(404, f"LFS object {body.get('oid')} is not stored")
        return json_reply({})
