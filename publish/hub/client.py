"""All traffic with the Hub, through huggingface_hub's HfApi (the shell: I/O and nothing clever).

Like twine's repository.py, this is the one place that talks HTTP. It reads the remote state a plan is made
against, makes sure the repository and branch exist, commits, and verifies the result. Transient failures (5xx,
429 with Retry-After, dropped connections) are retried with backoff; every message is scrubbed of tokens.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from publish.errors import AuthError, ConcurrentPushError, HubError, scrub
from publish.events import Emit, Retrying, TokenRenewed, ignore
from publish.hub.auth import TrustedPublisher, keep_huggingface_hub_from_exchanging
from publish.hub.plan import LocalFile, RemoteFile

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
    tags: Mapping[str, str] = field(default_factory=dict)  # tag -> the commit it names


@dataclass(frozen=True)
class PullRequest:
    """A Hub pull request against a branch; its commits live on `revision` (refs/pr/N)."""

    num: int
    url: str
    revision: str
    head: str = ""  # the newest commit on refs/pr/N, when known
    push_id: str | None = None  # what its newest commit's description records


@dataclass(frozen=True)
class Commit:
    oid: str
    url: str
    pull_request: PullRequest | None = None  # set when the commit opened a pull request instead of moving a branch


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
        emit: Emit = ignore,
        publisher: TrustedPublisher | None = None,
    ) -> None:
        from huggingface_hub import HfApi

        self.endpoint = (endpoint or "https://huggingface.co").rstrip("/")
        self.publisher = publisher  # the token's source when it is a Trusted Publisher's: it is renewed, not fixed
        if publisher is not None:
            keep_huggingface_hub_from_exchanging()
        self._token = token or (publisher.token if publisher else None)
        self._api = HfApi(endpoint=self.endpoint, token=self._token or False)
        self._retries = retries
        self._backoff = backoff
        self._sleep = sleep
        self.emit = emit  # retries are reported through it as they happen
        self._operations: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()  # uploads run in a few threads

    @classmethod
    def from_environment(cls) -> Hub:
        """HF_ENDPOINT (self-hosted hubs) and the token: a Trusted Publisher's when HF_OIDC_RESOURCE is set (as
        huggingface_hub's get_token() decides), else HF_TOKEN or huggingface_hub's stored login."""
        from huggingface_hub import get_token

        endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        publisher = TrustedPublisher.from_environment(endpoint)
        if publisher is None:
            return cls(endpoint=endpoint, token=get_token())
        return cls(endpoint=endpoint, publisher=publisher)  # the first request exchanges GitHub's ID token

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def require_token(self) -> None:
        if not self._token and self.publisher is None:  # a Trusted Publisher exchanges on the first request
            raise AuthError(
                "no Hub token found",
                hint="set HF_TOKEN in the environment (never on the command line) or run `hf auth login`",
            )

    def require_write_token(self) -> str:
        """Ask the Hub who the token belongs to, before anything is hashed or created; the account name.

        A missing, refused or read-only token fails here, in one request, instead of at commit time.
        """
        self.require_token()
        info = self._call(lambda: self._api.whoami(), "check the token (whoami)")
        access = (info.get("auth") or {}).get("accessToken") or {}
        if access.get("role") == "read":
            raise AuthError(
                f"the token ({access.get('displayName') or 'unnamed'}) of {info.get('name')} is read-only",
                hint="create a token with write access at https://huggingface.co/settings/tokens",
            )
        return str(info.get("name") or "")

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
        tags = {t.name: t.target_commit for t in refs.tags}
        if branch in heads:
            head = heads[branch]
            return RemoteState(True, True, head, None, self.files_at(repo_id, head), tags)
        start = self.first_commit(repo_id, "main" if "main" in heads else next(iter(heads), "main"))
        files = self.files_at(repo_id, start) if start else ()
        return RemoteState(True, False, None, start, files, tags)

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
        """Create `tag` on `revision`; the Hub refuses a tag that exists (the caller checked before committing)."""
        self._call(
            lambda: self._api.create_tag(repo_id, tag=tag, revision=revision, tag_message=message),
            f"tag {repo_id}@{revision[:12]} as {tag}",
        )

    def upload_objects(
        self, repo_id: str, revision: str, files: Sequence[LocalFile], *, create_pr: bool = False
    ) -> None:
        """Upload the LFS content of `files` ahead of the commit (the commit then sends only pointers); objects
        already on the server are skipped. Nothing becomes visible on any branch until the commit."""
        operations = [self._operation(revision, file) for file in files]
        self._call(
            lambda: self._api.preupload_lfs_files(repo_id, operations, revision=revision, create_pr=create_pr),
            f"upload {', '.join(f.path for f in files)} to {repo_id}@{revision}",
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
        create_pr: bool = False,
    ) -> Commit:
        """One commit holding every addition and deletion, made only if `branch` is still at `parent`; with
        `create_pr`, made on top of `parent` as a new pull request against `branch`, which stays where it is."""
        from huggingface_hub import CommitOperationDelete

        operations: list[Any] = [self._operation(branch, file, taken=True) for file in additions]
        operations += [CommitOperationDelete(path_in_repo=path) for path in deletions]
        for attempt in range(self._retries + 1):
            try:
                info = self._translate(
                    lambda: self._api.create_commit(
                        repo_id, operations, commit_message=title, commit_description=description,
                        revision=branch, parent_commit=parent, create_pr=create_pr,
                    ),
                    f"open a pull request against {repo_id}@{branch}" if create_pr else f"commit to {repo_id}@{branch}",
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
                landed = self._landed(repo_id, branch, parent, description, create_pr)
                if landed is not None:  # the commit went through; only its answer was lost
                    return landed
                self._retry(error, attempt, f"commit to {repo_id}@{branch}")
                continue
            opened = None
            if info.pr_url and info.pr_num is not None and info.pr_revision:
                opened = PullRequest(info.pr_num, info.pr_url, info.pr_revision, info.oid, push_id_in(description))
            return Commit(info.oid, info.commit_url, opened)
        raise AssertionError("unreachable")

    def pull_requests(self, repo_id: str, branch: str) -> list[PullRequest]:
        """The open pull requests against `branch`, newest first, each with the push id its newest commit records
        (None for one hubpub did not open)."""
        api, found = self._api, []
        listed = self._call(
            lambda: list(api.get_repo_discussions(repo_id, discussion_type="pull_request", discussion_status="open")),
            f"list the open pull requests of {repo_id}",
        )
        for discussion in listed:
            num = discussion.num
            details = self._call(partial(api.get_discussion_details, repo_id, num),
                                 f"read pull request #{num} of {repo_id}")
            if details.target_branch not in (branch, f"refs/heads/{branch}") or not discussion.git_reference:
                continue
            revision = discussion.git_reference
            commits = self._call(partial(api.list_repo_commits, repo_id, revision=revision),
                                 f"read the history of {repo_id}@{revision}")
            newest = commits[0] if commits else None
            found.append(PullRequest(
                discussion.num, discussion.url, revision, newest.commit_id if newest else "",
                push_id_in(f"{newest.title}\n\n{newest.message}") if newest else None,
            ))
        return found

    def find_pull_request(self, repo_id: str, branch: str, push_id: str) -> PullRequest | None:
        """The open pull request against `branch` whose newest commit records `push_id`, if any."""
        return next((pr for pr in self.pull_requests(repo_id, branch) if pr.push_id == push_id), None)

    def _landed(self, repo_id: str, branch: str, parent: str, description: str, create_pr: bool) -> Commit | None:
        """After a failed commit request: did our commit land anyway (same push id, right on top of parent, or in
        an open pull request)?"""
        push_id = push_id_in(description)
        if create_pr:
            opened = self.find_pull_request(repo_id, branch, push_id) if push_id else None
            return Commit(opened.head, f"{self.endpoint}/{repo_id}/commit/{opened.head}", opened) if opened else None
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

    def _operation(self, branch: str, file: LocalFile, *, taken: bool = False) -> Any:
        """One CommitOperationAdd per branch, file and content: an object uploaded ahead is marked so by
        huggingface_hub, and the commit then sends its pointer only. A commit takes its operations (huggingface_hub
        refuses to commit one twice)."""
        key = (branch, file.path, _sha256(file))
        with self._lock:
            op = self._operations.pop(key, None) if taken else self._operations.get(key)
            if op is None:
                op = _new_operation(file)
                if not taken:
                    self._operations[key] = op
        return op

    def _call(self, request: Callable[[], T], what: str) -> T:
        """Run a request, retrying transient failures with backoff (Retry-After honoured)."""
        for attempt in range(self._retries + 1):
            try:
                return self._translate(request, what)
            except HubError as error:
                if not _transient(error.__cause__) or attempt == self._retries:
                    raise
                self._retry(error, attempt, what)
        raise AssertionError("unreachable")

    def _retry(self, error: HubError, attempt: int, what: str) -> None:
        wait = _wait(error.__cause__, attempt, self._backoff)
        self.emit(Retrying(what, _reason(error.__cause__, self.endpoint), wait, attempt + 1, self._retries))
        self._sleep(wait)

    def _translate(self, request: Callable[[], T], what: str) -> T:
        """One request, with a Trusted Publisher's token renewed first when it is about to expire, and once more
        (then the request repeated) when the Hub refused it as expired: a 401 means nothing was done."""
        self._renew(what)
        used = self._token
        try:
            with self._errors(what):
                return request()
        except AuthError as error:
            if self.publisher is None or _status(error.__cause__) != 401:
                raise
            self._renew(what, refused=used)
        with self._errors(what):
            return request()
        raise AssertionError("unreachable")  # pragma: no cover - _errors always raises or returns

    def _renew(self, what: str, *, refused: str | None = None) -> None:
        """A Trusted Publisher's new token, when the current one is about to expire or was refused; said in one
        line (the first exchange, the login, goes unsaid)."""
        renewed = self.publisher.renew(what, refused=refused) if self.publisher is not None else None
        if renewed is None:
            return
        self._token = self._api.token = renewed.token
        if renewed.why:
            self.emit(TokenRenewed(what, renewed.why))

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Every failure huggingface_hub can raise, as one paragraph: what was being done, the status, the Hub's
        own message, and what to do."""
        import httpx2
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        try:
            yield
        except RepositoryNotFoundError as error:
            status = _status(error)
            cls = AuthError if status in (401, 403) and self._token else HubError
            raise cls(
                f"cannot {what}: repository not found or not accessible ({status})",
                hint="check the repo id, and that your token may read and write it",
            ) from error
        except HfHubHTTPError as error:
            status = _status(error)
            said = _hub_message(error)
            answered = "the Hub refused the token (401)" if status == 401 else f"the Hub answered {status}"
            text = f"cannot {what}: {answered}" + (f": {said}" if said else "")
            if status in (401, 403):
                raise AuthError(text, hint="use a token with write access to this repository (HF_TOKEN)") from error
            raise HubError(scrub(text, self._token), hint=_hint_for(status, self.endpoint)) from error
        except httpx2.TransportError as error:
            raise HubError(f"cannot {what}: no answer from {self.endpoint} ({type(error).__name__}: "
                           f"{scrub(str(error), self._token) or 'connection failed'})",
                           hint=f"is {self.endpoint} reachable? set HF_ENDPOINT to a Hub, or unset it") from error
        except (json.JSONDecodeError, KeyError, TypeError) as error:  # an answer that is not what a Hub sends
            raise HubError(f"cannot {what}: {self.endpoint} answered with something that is not the Hub's JSON "
                           f"({type(error).__name__})",
                           hint="HF_ENDPOINT must point at a Hugging Face Hub (or a server speaking its API)"
                           ) from error
        except OSError as error:
            raise HubError(f"cannot {what}: {type(error).__name__}: {scrub(str(error), self._token)}",
                           hint=f"is {self.endpoint} reachable?") from error


def push_id_in(message: str) -> str | None:
    """The push id a hubpub commit description records (`hubpub-push-id: ...`), if any."""
    match = re.search(r"^hubpub-push-id: (\S+)$", message, re.MULTILINE)
    return match[1] if match else None


def _new_operation(file: LocalFile) -> Any:
    from huggingface_hub import CommitOperationAdd

    op = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=file.content or str(file.source))
    # Hand over the digest we already have (cached): huggingface_hub would otherwise read the file again.
    op.upload_info.sha256 = bytes.fromhex(_sha256(file))
    return op


def _sha256(file: LocalFile) -> str:
    if file.sha256 is None:
        raise ValueError(f"{file.path} must be hashed before it is uploaded")
    return file.sha256


def _hub_message(error: BaseException) -> str:
    """The Hub's own words (X-Error-Message or the JSON body's "error"), one line, without a token."""
    said = getattr(error, "server_message", None) or ""
    return scrub(" ".join(str(said).split()))[:300]


def _hint_for(status: int | None, endpoint: str) -> str:
    if status == 404:
        return f"the repository, revision or API route does not exist on {endpoint}; check the repo id and " \
               "HF_ENDPOINT"
    if status == 409:
        return "it exists already; run `hubpub plan` to see the Hub's state"
    if status == 429:
        return "rate-limited by the Hub: wait a few minutes, then push again"
    if status is not None and status >= 500:
        return "the Hub is failing; nothing was overwritten: push again later (unchanged files are skipped)"
    return "run `hubpub plan` to see the Hub's state, then push again"


def _reason(error: BaseException | None, endpoint: str) -> str:
    status = _status(error)
    if status is not None:
        return f"{status} from {endpoint}"
    return f"{type(error).__name__} talking to {endpoint}"


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
