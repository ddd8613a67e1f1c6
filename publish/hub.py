"""All traffic with the Hub, through huggingface_hub's HfApi (the shell: I/O and nothing clever).

Like twine's repository.py, this is the one place that talks HTTP. It reads the remote state a plan is made
against, makes sure the repository and branch exist, commits, and verifies the result. Transient failures (5xx,
429 with Retry-After, dropped connections) are retried with backoff; every message is scrubbed of tokens.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import AuthError, ConcurrentPushError, HubError, scrub
from .plan import LocalFile, RemoteFile

T = TypeVar("T")
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RemoteState:
    """What a branch holds now, or, for a branch that does not exist yet, what it would start from."""

    repo_exists: bool
    branch_exists: bool
    head: str | None  # the branch head; None if the branch does not exist
    start: str | None  # the commit a new branch starts from: the repository's first commit
    files: tuple[RemoteFile, ...]


@dataclass(frozen=True)
class Commit:
    oid: str
    url: str


class Hub:
    """A Hub endpoint and a token. The token is kept private: it never appears in a message."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        retries: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from huggingface_hub import HfApi

        self.endpoint = (endpoint or "https://huggingface.co").rstrip("/")
        self._token = token
        self._api = HfApi(endpoint=self.endpoint, token=token or False)
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep

    @classmethod
    def from_environment(cls) -> Hub:
        """HF_ENDPOINT (self-hosted hubs) and the token from HF_TOKEN or huggingface_hub's stored login."""
        from huggingface_hub import get_token
        from huggingface_hub.errors import OIDCError

        try:
            token = get_token()
        except OIDCError as error:  # a Trusted Publisher was asked for (HF_OIDC_RESOURCE) and could not answer
            raise AuthError(f"Trusted Publisher login failed: {scrub(str(error))}",
                            hint="run in GitHub Actions with `permissions: id-token: write`, or unset "
                                 "HF_OIDC_RESOURCE and provide HF_TOKEN") from None
        return cls(endpoint=os.environ.get("HF_ENDPOINT"), token=token)

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def require_token(self) -> None:
        if not self._token:
            raise AuthError(
                "no Hub token found",
                hint="set HF_TOKEN in the environment (never on the command line) or run `hf auth login`",
            )

    # -- reading --------------------------------------------------------------------------------------------

    def remote_state(self, repo_id: str, branch: str) -> RemoteState:
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            refs = self._call(lambda: self._api.list_repo_refs(repo_id), f"read the branches of {repo_id}")
        except HubError as error:
            if isinstance(error.__cause__, RepositoryNotFoundError):
                return RemoteState(False, False, None, None, ())
            raise
        heads = {b.name: b.target_commit for b in refs.branches}
        if branch in heads:
            head = heads[branch]
            return RemoteState(True, True, head, None, self.files_at(repo_id, head))
        start = self.first_commit(repo_id, "main" if "main" in heads else next(iter(heads), "main"))
        files = self.files_at(repo_id, start) if start else ()
        return RemoteState(True, False, None, start, files)

    def files_at(self, repo_id: str, revision: str) -> tuple[RemoteFile, ...]:
        from huggingface_hub.hf_api import RepoFile

        entries = self._call(
            lambda: list(self._api.list_repo_tree(repo_id, revision=revision, recursive=True)),
            f"list the files of {repo_id}@{revision}",
        )
        return tuple(
            RemoteFile(e.path, e.size, e.blob_id, e.lfs.sha256 if e.lfs else None)
            for e in entries
            if isinstance(e, RepoFile)
        )

    def first_commit(self, repo_id: str, branch: str) -> str | None:
        """The repository's first commit ("initial commit": only .gitattributes), where new branches start."""
        commits = self._call(
            lambda: self._api.list_repo_commits(repo_id, revision=branch), f"read the history of {repo_id}"
        )
        return commits[-1].commit_id if commits else None

    def head(self, repo_id: str, branch: str) -> str | None:
        refs = self._call(lambda: self._api.list_repo_refs(repo_id), f"read the branches of {repo_id}")
        return next((b.target_commit for b in refs.branches if b.name == branch), None)

    def commit_message(self, repo_id: str, revision: str) -> str:
        commits = self._call(
            lambda: self._api.list_repo_commits(repo_id, revision=revision), f"read the history of {repo_id}"
        )
        return f"{commits[0].title}\n\n{commits[0].message}" if commits else ""

    def safetensors_headers(self, repo_id: str, revision: str) -> dict[str, Any]:
        """Per remote safetensors file, huggingface_hub's `SafetensorsFileMetadata` (headers only, Range requests)."""
        meta = self._call(
            lambda: self._api.get_safetensors_metadata(repo_id, revision=revision),
            f"read the safetensors headers of {repo_id}@{revision}",
        )
        return dict(meta.files_metadata)

    def file_header(self, repo_id: str, filename: str, revision: str) -> Any:
        """One remote safetensors file's header (huggingface_hub reads it with Range requests)."""
        return self._call(
            lambda: self._api.parse_safetensors_file_metadata(repo_id, filename, revision=revision),
            f"read the safetensors header of {filename} in {repo_id}@{revision}",
        )

    def download_path(self, repo_id: str, filename: str, revision: str) -> str:
        """Download one file into huggingface_hub's cache and return its local path."""
        from huggingface_hub import hf_hub_download

        return self._call(
            lambda: hf_hub_download(
                repo_id, filename, revision=revision, endpoint=self.endpoint, token=self._token or False
            ),
            f"download {filename} from {repo_id}@{revision}",
        )

    # -- writing --------------------------------------------------------------------------------------------

    def ensure_repo(self, repo_id: str, private: bool) -> None:
        self._call(
            lambda: self._api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"),
            f"create {repo_id}",
        )

    def create_branch(self, repo_id: str, branch: str, start: str | None) -> str:
        """Create `branch` at `start` (the first commit, so it inherits no other variant's files); its head."""
        self._call(
            lambda: self._api.create_branch(repo_id, branch=branch, revision=start, exist_ok=True),
            f"create branch {branch} of {repo_id}",
        )
        head = self.head(repo_id, branch)
        if head is None:
            raise HubError(f"branch {branch!r} of {repo_id} was created but cannot be found")
        return head

    def create_tag(self, repo_id: str, tag: str, revision: str, message: str) -> None:
        self._call(
            lambda: self._api.create_tag(repo_id, tag=tag, revision=revision, tag_message=message, exist_ok=True),
            f"tag {repo_id}@{revision} as {tag}",
        )

    def commit(
        self,
        repo_id: str,
        branch: str,
        *,
        additions: Sequence[LocalFile],
        deletions: Sequence[str],
        parent: str,
        title: str,
        description: str,
    ) -> Commit:
        """One commit holding every addition and deletion, made only if `branch` is still at `parent`."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        operations: list[Any] = []
        for file in additions:
            op = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=file.content or str(file.source))
            # Hand over the digest we already have (cached): huggingface_hub would otherwise read the file again.
            op.upload_info.sha256 = bytes.fromhex(file.sha256)
            operations.append(op)
        operations += [CommitOperationDelete(path_in_repo=path) for path in deletions]
        for attempt in range(self._retries + 1):
            try:
                info = self._translate(
                    lambda: self._api.create_commit(
                        repo_id, operations, commit_message=title, commit_description=description,
                        revision=branch, parent_commit=parent,
                    ),
                    f"commit to {repo_id}@{branch}",
                )
            except HubError as error:
                status = _status(error.__cause__)
                if status == 412:
                    raise ConcurrentPushError(
                        f"branch {branch!r} of {repo_id} moved while pushing (expected head {parent[:12]}); "
                        "nothing was overwritten",
                        hint="someone else pushed; run `hubpub plan` to see the new state, then push again",
                    ) from None
                if not _transient(error.__cause__) or attempt == self._retries:
                    raise
                landed = self._landed(repo_id, branch, parent, description)
                if landed is not None:  # the commit went through; only its answer was lost
                    return landed
                self._sleep(_wait(error.__cause__, attempt, self._backoff))
                continue
            return Commit(info.oid, info.commit_url)
        raise AssertionError("unreachable")

    def _landed(self, repo_id: str, branch: str, parent: str, description: str) -> Commit | None:
        """After a failed commit request: did our commit land anyway (same push id, right on top of parent)?"""
        head = self.head(repo_id, branch)
        if head is None or head == parent:
            return None
        if description.splitlines()[-1] in self.commit_message(repo_id, head):
            return Commit(head, f"{self.endpoint}/{repo_id}/commit/{head}")
        raise ConcurrentPushError(
            f"branch {branch!r} of {repo_id} moved to {head[:12]} while pushing; nothing was overwritten",
            hint="someone else pushed; run `hubpub plan`, then push again",
        )

    # -- plumbing -------------------------------------------------------------------------------------------

    def _call(self, request: Callable[[], T], what: str) -> T:
        """Run a request, retrying transient failures with backoff (Retry-After honoured)."""
        for attempt in range(self._retries + 1):
            try:
                return self._translate(request, what)
            except HubError as error:
                if not _transient(error.__cause__) or attempt == self._retries:
                    raise
                self._sleep(_wait(error.__cause__, attempt, self._backoff))
        raise AssertionError("unreachable")

    def _translate(self, request: Callable[[], T], what: str) -> T:
        with self._errors(what):
            return request()
        raise AssertionError("unreachable")  # pragma: no cover - _errors always raises or returns

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        try:
            yield
        except RepositoryNotFoundError as error:
            status = _status(error)
            cls = AuthError if status in (401, 403) and self._token else HubError
            raise cls(
                f"cannot {what}: repository not found or not accessible ({status})",
                hint="check the repo id and that your token may write to it",
            ) from error
        except HfHubHTTPError as error:
            status = _status(error)
            if status in (401, 403):
                raise AuthError(f"cannot {what}: the Hub refused the token ({status})",
                                hint="use a token with write access (HF_TOKEN)") from error
            raise HubError(f"cannot {what}: {scrub(str(error), self._token)}") from error
        except (httpx2.TransportError, OSError) as error:
            raise HubError(f"cannot {what}: {type(error).__name__}: {scrub(str(error), self._token)}",
                           hint=f"is {self.endpoint} reachable?") from error


def _status(error: BaseException | None) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _transient(error: BaseException | None) -> bool:
    import httpx2

    return _status(error) in RETRY_STATUS or isinstance(error, httpx2.TransportError)


def _wait(error: BaseException | None, attempt: int, backoff: float) -> float:
    response = getattr(error, "response", None)
    retry_after = response.headers.get("Retry-After") if response is not None else None
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), 60.0)
    return min(backoff * 2**attempt, 30.0)
