"""Upload the plans' LFS content ahead of their commits, each file as soon as its digest is known.

Hashing runs ahead in the background (hashcache.Prefetch). Up to UPLOAD_STREAMS objects go up at once, as
huggingface_hub's own upload does: whenever streams are free, as many files hashed by then go up in one
`Hub.upload_objects` call (one preupload and one LFS batch request for the group, then one PUT per object the server
does not hold yet, each in its own stream), the earlier plans' first. While an upload is running and more of a
plan is still being hashed, a group that would not fill the free streams waits for more digests: when hashing is
the slower side, this sends fewer, fuller groups (fewer requests) and the link is never left idle. Every plan's files are uploaded at once, so a
later variant's upload runs while an earlier one commits and verifies; each commit waits for its own files only.
Files that will be stored as regular git blobs go with the commit, which sends them inline; so does any LFS file
this module did not expect (the commit uploads it then).
"""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from publish.events import Emit, Progress
from publish.hub.hashcache import REGULAR_LIMIT, Digest, Prefetch
from publish.hub.plan import LocalFile, Plan

if TYPE_CHECKING:
    from publish.hub.client import Hub

# Objects uploaded at once (huggingface_hub's own default): one stream is far slower than the disk and the network.
UPLOAD_STREAMS = 5
# How often the scheduler looks up from waiting to see whether it was stopped.
STOP_POLL = 0.2


# Weight formats the Hub's default .gitattributes stores in LFS whatever their size.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.gguf", "*.h5", "*.onnx", "*.msgpack",
                "*.npy", "*.npz")


def goes_to_lfs(file: LocalFile) -> bool:
    """Will the Hub store this file in LFS? Weight files (by the Hub's default .gitattributes) and anything over
    the regular-file limit; the preupload answer has the last word."""
    name = file.path.rsplit("/", 1)[-1]
    return file.source is not None and (
        file.size > REGULAR_LIMIT or any(fnmatch.fnmatchcase(name, pattern) for pattern in LFS_PATTERNS))


class Uploads:
    """The uploads of several plans, scheduled by one background thread; `wait(plan)` before committing it."""

    def __init__(self, hub: Hub, hashing: Prefetch, digest: Callable[[LocalFile], LocalFile], emit: Emit) -> None:
        self.hub, self.hashing, self.digest, self.emit = hub, hashing, digest, emit
        self._done: dict[str, threading.Event] = {}
        self._failed: dict[str, BaseException] = {}
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, plans: Sequence[Plan]) -> Uploads:
        pending = [(plan, c.local) for plan in plans for c in plan.uploads if c.local and goes_to_lfs(c.local)]
        self._done = {plan.branch: threading.Event() for plan in plans}
        self._thread = threading.Thread(target=self._run, args=(list(plans), pending), name="hubpub-uploads",
                                        daemon=True)
        self._thread.start()
        return self

    def wait(self, plan: Plan) -> None:
        """Block until `plan`'s files are uploaded; raise what failed them."""
        self._done[plan.branch].wait()
        failure = self._failed.get(plan.branch)
        if failure is not None:
            raise failure

    def stop(self) -> None:
        """Start nothing more; uploads in flight finish (or fail) in the background."""
        self._stopped.set()

    def _run(self, plans: list[Plan], pending: list[tuple[Plan, LocalFile]]) -> None:
        try:
            self._schedule(plans, pending)
        except BaseException as error:  # noqa: BLE001 - handed to every waiter instead of dying in this thread
            for branch in self._done:
                self._failed.setdefault(branch, error)
        finally:
            for branch, event in self._done.items():
                if not event.is_set():
                    self._failed.setdefault(branch, RuntimeError("the uploads were stopped"))
                event.set()

    def _schedule(self, plans: list[Plan], pending: list[tuple[Plan, LocalFile]]) -> None:
        left = {plan.branch: sum(1 for p, _ in pending if p is plan) for plan in plans}
        sizes = {plan.branch: sum(f.size for p, f in pending if p is plan) for plan in plans}
        sent = dict.fromkeys(left, 0)
        for branch, count in left.items():
            if count == 0:
                self._done[branch].set()
        in_flight: set[str | None] = set()  # the objects being uploaded: a copy in another variant waits for them
        with ThreadPoolExecutor(max_workers=UPLOAD_STREAMS, thread_name_prefix="hubpub-upload") as pool:
            running: dict[Future[None], tuple[Plan, list[LocalFile]]] = {}
            while (pending or running) and not self._stopped.is_set():
                free = UPLOAD_STREAMS - sum(len(files) for _, files in running.values())
                try:
                    group = self._ready_group(pending, in_flight, free) if free > 0 else None
                except Exception as error:  # noqa: BLE001 - a file that could not be hashed fails its plan only
                    plan = next(p for p, f in pending if self._hashed(f) and self._failed_digest(f))
                    self._fail(plan, error)
                    pending = [(p, f) for p, f in pending if p is not plan]
                    continue
                if group is not None and running and len(group[1]) < free and self._hashing_more(group[0], pending):
                    group = None  # streams are busy and more of this plan is being hashed: send a fuller group
                if group is not None:
                    plan, files = group
                    pending = [(p, f) for p, f in pending if not (p is plan and f.path in {g.path for g in files})]
                    in_flight |= {f.sha256 for f in files}
                    running[pool.submit(self.hub.upload_objects, plan.repo_id, plan.branch, files)] = (plan, files)
                    continue
                waiting: list[Future[Any]] = list(running)
                if free > 0:
                    waiting += [job for _, f in pending if (job := self._hashing_job(f)) is not None and not job.done()]
                finished, _ = wait(waiting, timeout=STOP_POLL, return_when=FIRST_COMPLETED)
                for future in [f for f in running if f in finished]:
                    plan, files = running.pop(future)
                    in_flight -= {f.sha256 for f in files}
                    if plan.branch in self._failed:
                        continue
                    failure = future.exception()
                    if failure is not None:
                        self._fail(plan, failure)
                        pending = [(p, f) for p, f in pending if p is not plan]
                        continue
                    sent[plan.branch] += sum(f.size for f in files)
                    left[plan.branch] -= len(files)
                    self.emit(Progress("uploading", plan.branch, files[-1].path, sent[plan.branch],
                                       sizes[plan.branch]))
                    if left[plan.branch] == 0:
                        self._done[plan.branch].set()

    def _ready_group(self, pending: list[tuple[Plan, LocalFile]], in_flight: set[str | None], most: int
                     ) -> tuple[Plan, list[LocalFile]] | None:
        """Up to `most` hashed files of the first plan that has any, with their digests, but those whose object
        is being uploaded already (for another variant: once it is up, the server has it)."""
        for plan in dict.fromkeys(p for p, _ in pending):
            files = [self.digest(f) for p, f in pending if p is plan and self._hashed(f)]
            files = [f for f in files if f.sha256 not in in_flight][:most]
            if files:
                return plan, files
        return None

    def _hashing_more(self, plan: Plan, pending: list[tuple[Plan, LocalFile]]) -> bool:
        """Whether some of `plan`'s pending files are still being hashed."""
        return any(p is plan and not self._hashed(f) for p, f in pending)

    def _failed_digest(self, file: LocalFile) -> bool:
        job = self._hashing_job(file)
        return job is not None and job.exception() is not None

    def _hashed(self, file: LocalFile) -> bool:
        job = self._hashing_job(file)
        return job is None or job.done()

    def _hashing_job(self, file: LocalFile) -> Future[Digest] | None:
        return self.hashing.future(file.source) if file.source is not None and not file.hashed else None

    def _fail(self, plan: Plan, error: BaseException) -> None:
        self._failed[plan.branch] = error
        self._done[plan.branch].set()
