"""All traffic with the Hub, through huggingface_hub's HfApi (the shell: I/O and nothing clever).

Like twine's repository.py, this is the one place that talks to the Hub. Each method does one thing a push needs
(read the refs, list a revision's files, create a branch, upload objects, commit) inside a retry scope: every
request huggingface_hub sends for it follows the one retry policy (publish/util/retry.py), with its waits announced
through `emit`, and every failure becomes one HubError paragraph (failures.py) that never carries the token.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from publish.errors import AuthError, ConcurrentPushError, HubError
from publish.events import Emit, TokenRenewed, ignore, retries_to
from publish.hub.auth import TrustedPublisher, keep_huggingface_hub_from_exchanging, may_write
from publish.hub.failures import host_of, hub_errors, reason_for, retryable, status_of
from publish.hub.plan import LocalFile, RemoteFile, push_id_in
from publish.hub.session import not_a_commit, use_retrying_session
from publish.hub.state import PullRequest, RemoteRepo, RemoteState
from publish.util.retry import Retrier, RetryPolicy, always

if TYPE_CHECKING:
    import httpx2
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.utils import SafetensorsFileMetadata

    from publish.hub.state import Refs

T = TypeVar("T")


@dataclass(frozen=True)
class Commit:
    oid: str
    url: str
    pull_request: PullRequest | None = None  # set when the commit opened a pull request instead of moving a branch


class Hub:
    """A Hub endpoint and a token. The token is kept private: it never appears in a message.

    `policy`, `sleep` and `clock` set how failed requests are retried (tests inject the last two); each retry is
    announced to `emit` as a `Retrying` event. With a Trusted Publisher (`publisher`) the token is not fixed: it is
    exchanged on the first request, and again before a request it would not outlive (said to `emit`).
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        emit: Emit = ignore,
        publisher: TrustedPublisher | None = None,
    ) -> None:
        from huggingface_hub import HfApi

        use_retrying_session()
        self.endpoint = (endpoint or "https://huggingface.co").rstrip("/")
        self.publisher = publisher
        if publisher is not None:
            keep_huggingface_hub_from_exchanging()
        self._token = token or (publisher.token if publisher else None)
        self._emit = emit
        self._api = HfApi(endpoint=self.endpoint, token=self._token or False)
        self._retrier = Retrier(policy or RetryPolicy(), sleep=sleep, clock=clock, announce=retries_to(emit))
        self._operations: dict[tuple[str, str, str], CommitOperationAdd] = {}
        self._lock = threading.Lock()  # uploads run in a few threads

    @classmethod
    def from_environment(cls, *, emit: Emit = ignore) -> Hub:
        """HF_ENDPOINT (self-hosted hubs) and the token: a Trusted Publisher's when HF_OIDC_RESOURCE is set (as
        huggingface_hub's get_token() decides), else HF_TOKEN or huggingface_hub's stored login."""
        from huggingface_hub import get_token

        endpoint = (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
        publisher = TrustedPublisher.from_environment(endpoint)
        if publisher is None:
            return cls(endpoint=endpoint, token=get_token(), emit=emit)
        return cls(endpoint=endpoint, publisher=publisher, emit=emit)  # the first request exchanges GitHub's token

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
        if not may_write(access):
            raise AuthError(
                f"the token ({access.get('displayName') or 'unnamed'}) of {info.get('name')} is valid but "
                "read-only: it may not create or push to repositories",
                hint="create a token with write access at https://huggingface.co/settings/tokens (a fine-grained "
                     "token needs write access to this repository), then set HF_TOKEN",
            )
        return str(info.get("name") or "")

    def check_read_token(self) -> str | None:
        """For a plan, which only reads: the account the token belongs to, or None without a token (anonymous
        reads see public repositories only). A token the Hub refuses fails here, instead of making every
        repository look absent."""
        if not self._token:
            return None
        info = self._call(lambda: self._api.whoami(), "check the token (whoami)")
        return str(info.get("name") or "")

    # -- reading --------------------------------------------------------------------------------------------

    def refs(self, repo_id: str) -> Refs | None:
        """The repository's branches and tags; None when it does not exist."""
        from huggingface_hub.errors import RepositoryNotFoundError

        from publish.hub.state import Refs

        try:
            refs = self._call(lambda: self._api.list_repo_refs(repo_id), f"read the branches of {repo_id}")
        except HubError as error:
            if isinstance(error.__cause__, RepositoryNotFoundError):
                return None
            raise
        return Refs({b.name: b.target_commit for b in refs.branches}, {t.name: t.target_commit for t in refs.tags})

    def remote_state(self, repo_id: str, branch: str) -> RemoteState:
        """What `branch` holds now (or would start from); a push reads it through one RemoteRepo instead."""
        return RemoteRepo(self, repo_id).state(branch)

    def history(self, repo_id: str, revision: str) -> tuple[str, ...]:
        """The commits of `revision`, newest first."""
        commits = self._call(lambda: self._api.list_repo_commits(repo_id, revision=revision),
                             f"read the history of {repo_id}@{revision}")
        return tuple(c.commit_id for c in commits)

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

    def commit_message(self, repo_id: str, revision: str) -> str:
        commits = self._call(
            lambda: self._api.list_repo_commits(repo_id, revision=revision), f"read the history of {repo_id}"
        )
        return f"{commits[0].title}\n\n{commits[0].message}" if commits else ""

    def file_header(self, repo_id: str, filename: str, revision: str) -> SafetensorsFileMetadata:
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

    def create_branch(self, repo_id: str, branch: str, start: str | None) -> None:
        """Create `branch` at `start` (the first commit, so it inherits no other variant's files)."""
        self._call(
            lambda: self._api.create_branch(repo_id, branch=branch, revision=start, exist_ok=True),
            f"create branch {branch} of {repo_id}",
        )

    def create_tag(self, repo_id: str, tag: str, revision: str, message: str) -> None:
        """Create `tag` on `revision`; the Hub refuses a tag that exists (the caller checked before committing)."""
        self._call(
            lambda: self._api.create_tag(repo_id, tag=tag, revision=revision, tag_message=message),
            f"tag {repo_id}@{revision[:12]} as {tag}",
        )

    def upload_objects(self, repo_id: str, revision: str, files: Sequence[LocalFile]) -> None:
        """Upload the LFS content of `files` ahead of the commit (the commit then sends only pointers): one
        preupload and one LFS batch request for them all, then each object not on the server yet, all at once.
        Nothing becomes visible on any branch until the commit."""
        operations = [self._operation(revision, file) for file in files]
        self._call(
            lambda: self._api.preupload_lfs_files(repo_id, operations, revision=revision, num_threads=len(files)),
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
        `create_pr`, made on top of `parent` as a new pull request against `branch`, which stays where it is.

        The commit request itself is never sent twice blindly: after a failure the branch (or its open pull
        requests) is read first, and a commit that landed (its answer was lost) is recognised by the push id ending
        `description`.
        """
        from huggingface_hub import CommitOperationDelete

        operations: list[CommitOperationAdd | CommitOperationDelete] = [
            self._operation(branch, file, taken=True) for file in additions]
        operations += [CommitOperationDelete(path_in_repo=path) for path in deletions]
        what = f"open a pull request against {repo_id}@{branch}" if create_pr else f"commit to {repo_id}@{branch}"
        policy = self._retrier.policy
        for attempt in range(policy.retries + 1):
            try:
                info = self._call(
                    lambda: self._api.create_commit(
                        repo_id, operations, commit_message=title, commit_description=description,
                        revision=branch, parent_commit=parent, create_pr=create_pr,
                    ),
                    what, replay=not_a_commit,
                )
            except HubError as error:
                cause = error.__cause__
                if status_of(cause) == 412:
                    raise ConcurrentPushError(
                        f"branch {branch!r} of {repo_id} moved while pushing (expected head {parent[:12]}); "
                        "nothing was overwritten",
                        hint="someone else pushed; run `hubpub plan` to see the new state, then push again",
                    ) from None
                if not retryable(cause, policy.statuses) or attempt == policy.retries:
                    raise
                landed = self._landed(repo_id, branch, parent, description, create_pr)
                if landed is not None:  # the commit went through; only its answer was lost
                    return landed
                self._retrier.pause(what, attempt + 1, host_of(self.endpoint), reason_for(cause, self.endpoint),
                                    getattr(cause, "response", None))
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
        refs = self.refs(repo_id)
        head = refs.heads.get(branch) if refs is not None else None
        if head is None or head == parent:
            return None
        if description.splitlines()[-1] in self.commit_message(repo_id, head):
            return Commit(head, f"{self.endpoint}/{repo_id}/commit/{head}")
        raise ConcurrentPushError(
            f"branch {branch!r} of {repo_id} moved to {head[:12]} while pushing; nothing was overwritten",
            hint="someone else pushed; run `hubpub plan`, then push again",
        )

    # -- plumbing -------------------------------------------------------------------------------------------

    def _operation(self, branch: str, file: LocalFile, *, taken: bool = False) -> CommitOperationAdd:
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

    def _call(self, request: Callable[[], T], what: str,
              replay: Callable[[httpx2.Request], bool] = always) -> T:
        """Run one HfApi call: its requests follow the retry policy, and its failure reads as a HubError.

        A Trusted Publisher's token is renewed first when it is about to expire, and once more (then the call
        repeated) when the Hub refused it: a 401 means nothing was done."""
        self._renew(what)
        used = self._token
        try:
            with self._retrier.scope(what, replay), hub_errors(what, self.endpoint, self._token):
                return request()
        except AuthError as error:
            if self.publisher is None or status_of(error.__cause__) != 401:
                raise
            self._renew(what, refused=used)
        with self._retrier.scope(what, replay), hub_errors(what, self.endpoint, self._token):
            return request()

    def _renew(self, what: str, *, refused: str | None = None) -> None:
        """A Trusted Publisher's new token, when the current one is about to expire or was refused; said in one
        line (the first exchange, the login, goes unsaid)."""
        renewed = self.publisher.renew(what, refused=refused) if self.publisher is not None else None
        if renewed is None:
            return
        self._token = self._api.token = renewed.token
        if renewed.why:
            self._emit(TokenRenewed(what, renewed.why))


def _new_operation(file: LocalFile) -> CommitOperationAdd:
    from huggingface_hub import CommitOperationAdd

    op = CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=file.content or str(file.source))
    # Hand over the digest we already have (cached): huggingface_hub would otherwise read the file again.
    op.upload_info.sha256 = bytes.fromhex(_sha256(file))
    return op


def _sha256(file: LocalFile) -> str:
    if file.sha256 is None:
        raise ValueError(f"{file.path} must be hashed before it is uploaded")
    return file.sha256
