"""Pull requests on the test Hub: `refs/pr/N` in the bare repository, their discussion beside it.

What huggingface_hub 2.4.0 calls: `create_commit(..., create_pr=True)` (`POST .../commit/{branch}?create_pr=1`),
`get_repo_discussions`, `get_discussion_details`, `merge_pull_request`, `change_discussion_status`, and
`list_repo_refs(include_pull_requests=True)`. Every other route (tree, paths-info, resolve, commits, info) reads a
pull request through its revision `refs/pr/N`, which Store.resolve knows.
"""

from __future__ import annotations

import html
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import git

from .store import ZERO_OID, HubError, iso

if TYPE_CHECKING:
    from .routes import Reply, Routes
    from .store import Store

PAGE = 50  # the Hub lists discussions 50 at a time
_FILE = "hub-discussions.json"  # in the bare repository's folder, next to its refs


class PullRequests:
    """Open, list, read, merge and close pull requests of the Store's repositories."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- storage ----------------------------------------------------------------------------------------------

    def _load(self, repo: git.Repo) -> list[dict[str, Any]]:
        path = Path(repo.git_dir) / _FILE
        return json.loads(path.read_text()) if path.is_file() else []

    def _save(self, repo: git.Repo, items: list[dict[str, Any]]) -> None:
        path = Path(repo.git_dir) / _FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(items, indent=1))
        tmp.replace(path)

    def _find(self, items: list[dict[str, Any]], repo_id: str, num: int) -> dict[str, Any]:
        for item in items:
            if item["num"] == num:
                return item
        raise HubError(404, f"Discussion #{num} of {repo_id} not found")

    # -- operations -------------------------------------------------------------------------------------------

    def create(self, repo_id: str, branch: str, ops: list[tuple[str, str, object]], *, summary: str,
               description: str, parent: str | None) -> tuple[int, str]:
        """Open a pull request against `branch` holding one commit (the ops on top of `parent`, or the branch head);
        returns its number and commit."""
        user = self.store.user
        with self.store.repo(repo_id) as repo:
            branch = self.store.branch_name(repo, branch)
            base = self.store.resolve(repo, parent) if parent else self.store.refs(repo)[0][branch]
            items = self._load(repo)
            num = max((item["num"] for item in items), default=0) + 1
            tree = self.store.tree_after(repo, base, ops)
            message = f"{summary}\n\n{description}" if description else summary
            oid = self.store.write_commit(repo, f"refs/pr/{num}", tree, [base], message, user, expected=ZERO_OID)
            now = iso(datetime.now(UTC))
            items.append({
                "num": num, "title": summary, "status": "open", "author": user, "createdAt": now,
                "base": branch, "baseCommit": base, "mergeCommitId": None,
                "events": [_event("comment", user, now, _comment(description or summary, user, now)),
                           _event("commit", user, now, {"subject": summary, "oid": oid})],
            })
            self._save(repo, items)
        return num, oid

    def listing(self, repo_id: str, *, kind: str, status: str, author: str | None) -> list[dict[str, Any]]:
        """The discussions matching the filters, newest first (only pull requests exist here)."""
        with self.store.repo(repo_id) as repo:
            items = self._load(repo)
        if kind == "discussion":
            return []
        chosen = [i for i in items if status in ("all", "") or (i["status"] in ("open", "draft")) == (status == "open")]
        return [i for i in reversed(chosen) if author in (None, "", i["author"])]

    def get(self, repo_id: str, num: int) -> dict[str, Any]:
        """One pull request's stored record."""
        with self.store.repo(repo_id) as repo:
            return self._find(self._load(repo), repo_id, num)

    def diff(self, repo_id: str, item: dict[str, Any]) -> str:
        """`git diff` between the pull request's base and its head (LFS files show as pointer changes)."""
        with self.store.repo(repo_id) as repo:
            head = self.store.pull_refs(repo)[f"refs/pr/{item['num']}"]
            return str(repo.git.diff(item["baseCommit"], head))

    def merge(self, repo_id: str, num: int, comment: str | None) -> str:
        """Merge into the base branch: fast-forward when the branch has not moved, else a merge commit; 409 on a
        conflict. Returns the branch's new head."""
        user, now = self.store.user, iso(datetime.now(UTC))
        with self.store.repo(repo_id) as repo:
            items = self._load(repo)
            item = self._find(items, repo_id, num)
            if item["status"] not in ("open", "draft"):
                raise HubError(400, f"Pull request #{num} is {item['status']}, it cannot be merged")
            branch = item["base"]
            head = self.store.refs(repo)[0].get(branch)
            if head is None:
                raise HubError(404, f"Invalid rev id: {branch} (the pull request's branch is gone)", "RevisionNotFound")
            pr_head = self.store.pull_refs(repo)[f"refs/pr/{num}"]
            if head == item["baseCommit"]:
                try:
                    repo.git.update_ref(f"refs/heads/{branch}", pr_head, head)
                except git.GitCommandError:
                    raise HubError(412, "A commit has happened since. Please refresh and try again.") from None
                merged = pr_head
            else:
                done = repo.git.merge_tree("--write-tree", head, pr_head, with_exceptions=False,
                                           with_extended_output=True)
                if done[0] != 0:
                    raise HubError(409, f"Pull request #{num} conflicts with {branch}; it cannot be merged")
                tree = done[1].splitlines()[0]
                merged = self.store.write_commit(repo, f"refs/heads/{branch}", tree, [head, pr_head],
                                                 f"Merge pull request #{num}: {item['title']}", user, expected=head)
            item.update(status="merged", mergeCommitId=merged)
            if comment:
                item["events"].append(_event("comment", user, now, _comment(comment, user, now)))
            item["events"].append(_event("status-change", user, now, {"status": "merged"}))
            self._save(repo, items)
        return merged

    def set_status(self, repo_id: str, num: int, status: str, comment: str | None) -> dict[str, Any]:
        """Close or re-open; the status-change event."""
        if status not in ("open", "closed"):
            raise HubError(400, "Invalid status, valid statuses are: 'open' and 'closed'")
        user, now = self.store.user, iso(datetime.now(UTC))
        with self.store.repo(repo_id) as repo:
            items = self._load(repo)
            item = self._find(items, repo_id, num)
            if item["status"] == "merged":
                raise HubError(400, f"Pull request #{num} is merged; its status cannot change")
            item["status"] = status
            if comment:
                item["events"].append(_event("comment", user, now, _comment(comment, user, now)))
            event = _event("status-change", user, now, {"status": status})
            item["events"].append(event)
            self._save(repo, items)
        return event

    def refs(self, repo_id: str) -> list[dict[str, str]]:
        """list_repo_refs' pullRequests: every refs/pr/N and its commit."""
        with self.store.repo(repo_id) as repo:
            pulls = self.store.pull_refs(repo)
        ordered = sorted(pulls.items(), key=lambda kv: int(kv[0].rsplit("/", 1)[-1]))
        return [{"name": name, "ref": name, "targetCommit": oid} for name, oid in ordered]


def _event(kind: str, user: str, when: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": secrets.token_hex(12), "type": kind, "createdAt": when, "author": {"name": user}, "data": data}


def _comment(text: str, user: str, when: str) -> dict[str, Any]:
    return {"edited": False, "hidden": False, "numEdits": 0, "editors": [user], "reactions": [], "isReport": False,
            "latest": {"raw": text, "html": f"<p>{html.escape(text)}</p>", "updatedAt": when,
                       "author": {"name": user}}}


# -- the HTTP side: /api/models/{repo}/discussions[/{num}[/merge|/status]] ---------------------------------------


def answer(routes: Routes, method: str, repo_id: str, rest: list[str]) -> Reply:
    """Route a discussions request (the caller matched /api/models/{repo}/discussions/...)."""
    from .routes import json_reply

    pulls: PullRequests = routes.hub.pulls
    params = routes.h.params
    if method == "GET" and not rest:
        kind, status = params.get("type", ["all"])[0], params.get("status", ["all"])[0]
        found = pulls.listing(repo_id, kind=kind, status=status, author=params.get("author", [None])[0])
        page = int(params.get("p", ["0"])[0] or 0)
        start = page * PAGE
        closed = sum(1 for i in found if i["status"] not in ("open", "draft"))
        return json_reply({"discussions": [_summary(i, repo_id) for i in found[start : start + PAGE]],
                           "count": len(found), "start": start, "numClosedDiscussions": closed})
    if not rest or not rest[0].isdigit():
        raise HubError(404, f"no route for {method} {routes.h.raw_path}")
    num, action = int(rest[0]), "/".join(rest[1:])
    body = routes.h.json_body() if method == "POST" else {}
    comment = str(body.get("comment") or "").strip() or None
    if method == "GET" and not action:
        item = pulls.get(repo_id, num)
        data = {**_summary(item, repo_id), "events": item["events"], "filesWithConflicts": [],
                "changes": {"base": f"refs/heads/{item['base']}",
                            **({"mergeCommitId": item["mergeCommitId"]} if item["mergeCommitId"] else {})}}
        if params.get("diff", ["0"])[0] in ("1", "true"):
            data["diff"] = pulls.diff(repo_id, item)
        return json_reply(data)
    if method == "POST" and action == "merge":
        pulls.merge(repo_id, num, comment)
        return json_reply({})
    if method == "POST" and action == "status":
        return json_reply({"newStatus": pulls.set_status(repo_id, num, str(body.get("status")), comment)})
    raise HubError(404, f"no route for {method} {routes.h.raw_path}")


def _summary(item: dict[str, Any], repo_id: str) -> dict[str, Any]:
    return {"num": item["num"], "title": item["title"], "status": item["status"], "author": {"name": item["author"]},
            "createdAt": item["createdAt"], "repo": {"name": repo_id, "type": "model"}, "isPullRequest": True,
            "pinned": False, "numComments": sum(1 for e in item["events"] if e["type"] == "comment"), "topReactions": []}
