"""Upload a plan's LFS content ahead of its commit, each file as soon as its digest is known.

Hashing runs ahead in the background (hashcache.Prefetch). Whenever an upload slot is free, every planned file
hashed by then goes up in one `Hub.upload_objects` call: one preupload and one LFS batch request for the group,
then one PUT per object the server does not hold yet. Files that will be stored as regular git blobs go with the
commit, which sends them inline; so does any LFS file this module did not expect (the commit uploads it then).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from publish.events import Emit, Progress
from publish.hub.hashcache import REGULAR_LIMIT, Digest, Prefetch
from publish.hub.plan import LocalFile, Plan, is_managed

if TYPE_CHECKING:
    from publish.hub.client import Hub

# Upload calls in flight at once (each uploads its group's objects a few at a time).
UPLOAD_WORKERS = 2


def goes_to_lfs(file: LocalFile) -> bool:
    """Will the Hub store this file in LFS? Weight files (by the Hub's default .gitattributes) and anything over
    the regular-file limit; the preupload answer has the last word."""
    return file.source is not None and (file.size > REGULAR_LIMIT or is_managed(file.path))


def upload_ahead(hub: Hub, planned: Plan, digest: Callable[[LocalFile], LocalFile], hashing: Prefetch,
                 emit: Emit) -> None:
    """Upload the LFS content of `planned`'s additions, grouping the files hashed by the time a slot is free."""
    pending = [c.local for c in planned.uploads if c.local is not None and goes_to_lfs(c.local)]
    total, done = sum(f.size for f in pending), 0

    def hashing_job(file: LocalFile) -> Future[Digest] | None:
        return hashing.future(file.source) if file.source is not None and not file.hashed else None

    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS, thread_name_prefix="hubpub-upload") as pool:
        running: dict[Future[None], list[LocalFile]] = {}
        while pending or running:
            ready = [f for f in pending if (job := hashing_job(f)) is None or job.done()] \
                if len(running) < UPLOAD_WORKERS else []
            if ready:
                pending = [f for f in pending if f not in ready]
                group = [digest(f) for f in ready]
                running[pool.submit(hub.upload_objects, planned.repo_id, planned.branch, group)] = group
                continue
            waiting: list[Future[Any]] = list(running)
            if len(running) < UPLOAD_WORKERS:
                waiting += [job for f in pending if (job := hashing_job(f)) is not None]
            finished, _ = wait(waiting, return_when=FIRST_COMPLETED)
            for future in [f for f in running if f in finished]:
                group = running.pop(future)
                future.result()
                done += sum(f.size for f in group)
                emit(Progress("uploading", planned.branch, group[-1].path, done, total))
