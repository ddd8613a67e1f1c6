"""Publishing never lies and never surprises: each case that once exited 0 doing something nobody asked for, or
failed hiding its cause, through the CLI (in-process) and the library, against the local Hub server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from publish.commands.push import push
from publish.errors import HubError
from publish.events import Event, Progress, Retrying
from publish.manifest.model import load_manifest

from .cannedserver import serving
from .conftest import HUB_TOKEN, hubpub, point_manifest
from .hubserver import HubServer
from .test_push import REPO, client, commits, hubpub_cli, run_push, settings, uploads

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def edit(manifest: Path, change: object) -> Path:
    data = yaml.safe_load(manifest.read_text())
    change(data)  # type: ignore[operator]
    manifest.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return manifest


# 1. a mistyped path ----------------------------------------------------------------------------------------------


def test_a_mistyped_path_is_an_error_naming_it_not_a_card_only_push(weighed: Path, hub: HubServer) -> None:
    def typo(data: dict) -> None:
        data["variants"][0]["path"] = "good/mian"

    edit(weighed, typo)
    for command in ("push", "plan"):
        done = hubpub_cli(command, "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "good/mian" in done.stderr and "does not exist" in done.stderr and "--card-only" in done.stderr
    assert not commits(hub) and "create" not in " ".join(r.path for r in hub.requests)


def test_card_only_on_a_new_repository_says_the_weights_are_not_there(weighed: Path, hub: HubServer) -> None:
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", "--card-only", hub=hub,
                      cwd=weighed.parent)
    assert done.returncode == 1
    assert "holds no weights" in done.stderr and "push the weights first" in done.stderr
    assert "not found" not in done.stderr and not commits(hub)


def test_card_only_publishes_the_card_and_keeps_the_weights(weighed: Path, hub: HubServer) -> None:
    run_push(weighed, hub, "main")
    before = hub.files(REPO, "main")
    weighed.write_text(weighed.read_text().replace("title: Qwen3.6-27B INT8 AutoRound", "title: Renamed"))
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", "--card-only", hub=hub,
                      cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    after = hub.files(REPO, "main")
    assert after["README.md"] != before["README.md"] and b"# Renamed" in after["README.md"]
    assert {k: v for k, v in after.items() if k != "README.md"} == {k: v for k, v in before.items() if k != "README.md"}


# 2. a tag that names another commit ------------------------------------------------------------------------------


def test_a_release_tag_on_another_commit_is_refused_before_committing(weighed: Path, hub: HubServer) -> None:
    run_push(weighed, hub, "main", tag="v1")
    first = hub.commit_count(REPO, "main")
    weighed.write_text(weighed.read_text().replace("title: Qwen3.6-27B INT8 AutoRound", "title: Changed"))
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", "--tag", "v1", hub=hub,
                      cwd=weighed.parent)
    assert done.returncode == 1 and "v1-main" in done.stderr and "nothing was committed" in done.stderr
    assert hub.commit_count(REPO, "main") == first


def test_a_release_tag_already_on_this_commit_is_accepted(weighed: Path, hub: HubServer) -> None:
    run_push(weighed, hub, "main", tag="v1")
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", "--tag", "v1", hub=hub,
                      cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    assert "already tagged" in done.stdout


# 3. a token in a large text file ---------------------------------------------------------------------------------


def test_a_token_at_the_end_of_a_3_mb_log_is_refused(weighed: Path, hub: HubServer) -> None:
    log = weighed.parent / "log.txt"
    token = "hf_" + "Leaked" * 5 + "0123456789"
    log.write_text("step ok\n" * 400_000 + f"HF_TOKEN={token}\n")
    assert log.stat().st_size > 3_000_000
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert done.returncode == 2 and "looks like a Hugging Face token" in done.stderr
    assert token not in done.stderr + done.stdout and not uploads(hub) and not commits(hub)


# 4. two shared files on one path ---------------------------------------------------------------------------------


def test_two_shared_files_on_one_repository_path_are_a_manifest_error(project: Path) -> None:
    (project.parent / "b").mkdir()
    (project.parent / "b" / "quantize.py").write_text("# other\n")
    edit(project, lambda data: data["files"].update(other=["../elsewhere/quantize.py"]))
    done = hubpub("render", "--manifest", str(project), cwd=project.parent)
    assert done.returncode == 2
    assert "'quantize.py' and '../elsewhere/quantize.py' would both be uploaded as 'quantize.py'" in done.stderr


# 5. the token is checked first -----------------------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["wrong", "read-only"])
def test_a_bad_token_fails_before_hashing_or_creating_anything(weighed: Path, hub: HubServer, problem: str) -> None:
    token = HUB_TOKEN
    if problem == "wrong":
        token = HUB_TOKEN + "x"
    else:
        hub.token_role = "read"
    done = hubpub_cli("push", "--manifest", str(weighed), "--all", hub=hub, cwd=weighed.parent, token=token)
    assert done.returncode == 2, done.stderr
    assert [r.path for r in hub.requests] == ["/api/whoami-v2"]
    assert "hashed" not in done.stderr
    assert ("read-only" if problem == "read-only" else "refused the token") in done.stderr


# 6. reporting as it goes -----------------------------------------------------------------------------------------


def test_the_plan_is_reported_before_the_first_upload(weighed: Path, hub: HubServer) -> None:
    events: list[Event] = []
    push(load_manifest(weighed), client(hub), settings("main"), emit=events.append)
    kinds = [type(e).__name__ for e in events]
    first_upload = next(i for i, e in enumerate(events) if isinstance(e, Progress) and e.stage == "uploading")
    assert kinds.index("Planned") < first_upload < kinds.index("Committed") < kinds.index("Verified")
    assert any(isinstance(e, Progress) and e.stage == "hashing" for e in events)


def test_a_landed_commit_is_reported_when_a_later_variant_fails(weighed: Path, hub: HubServer) -> None:
    hub.inject("POST", r"/commit/gs128$", status=422, times=1)
    done = hubpub_cli("push", "--manifest", str(weighed), "--all", hub=hub, cwd=weighed.parent)
    assert done.returncode == 1
    assert f"main: committed {hub.url}/{REPO}/commit/" in done.stdout
    assert "cannot commit" in done.stderr and "gs128" in done.stderr


def test_a_failed_upload_of_a_later_variant_leaves_the_earlier_commit_standing(weighed: Path, hub: HubServer) -> None:
    hub.inject("POST", r"/preupload/gs128$", status=422, times=1)  # both variants upload at once; gs128's fails
    done = hubpub_cli("push", "--manifest", str(weighed), "--all", hub=hub, cwd=weighed.parent)
    assert done.returncode == 1 and "cannot upload" in done.stderr and "gs128" in done.stderr
    assert f"main: committed {hub.url}/{REPO}/commit/" in done.stdout
    assert hub.commit_count(REPO, "main") == 2 and hub.commit_count(REPO, "gs128") == 1


def test_retries_are_reported_as_they_happen(weighed: Path, hub: HubServer) -> None:
    events: list[Event] = []
    hub.inject("GET", rf"^/api/models/{REPO}/refs", status=503, times=2)
    push(load_manifest(weighed), client(hub, emit=events.append), settings("main"))
    retries = [e for e in events if isinstance(e, Retrying)]
    assert len(retries) == 2 and "503 from" in retries[0].text() and retries[0].text().startswith("retrying in")


def test_push_json_reports_actions_commit_and_tag(weighed: Path, hub: HubServer) -> None:
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", "--tag", "v2", "--json", hub=hub,
                      cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["version"] == 1 and report["ok"] is True and report["dry_run"] is False
    (variant,) = report["variants"]
    assert variant["branch"] == "gs128" and variant["tag"] == "v2-gs128" and variant["verified"] is True
    assert variant["url"].endswith(variant["commit"]) and variant["upload_bytes"] > 0
    assert {a["action"] for a in variant["actions"]} == {"add"}


def test_plan_json_is_printed_and_nothing_is_sent(weighed: Path, hub: HubServer) -> None:
    done = hubpub_cli("plan", "--manifest", str(weighed), "--json", hub=hub, cwd=weighed.parent)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dry_run"] is True and [v["branch"] for v in report["variants"]] == ["main", "gs128"]
    assert all(v["commit"] is None for v in report["variants"]) and not commits(hub) and not uploads(hub)


def test_quiet_prints_only_results(weighed: Path, hub: HubServer) -> None:
    done = hubpub_cli("push", "-q", "--manifest", str(weighed), "--branch", "main", hub=hub, cwd=weighed.parent)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == ""


# 7. Hub errors in one paragraph ----------------------------------------------------------------------------------


def test_a_persistent_500_reads_as_one_paragraph(weighed: Path, hub: HubServer) -> None:
    hub.inject("GET", rf"^/api/models/{REPO}/refs", status=500, times=50)
    with pytest.raises(HubError) as caught:
        run_push(weighed, hub, "main")
    text = str(caught.value)
    assert text.startswith(f"cannot read the branches of {REPO}: the Hub answered 500: injected fault")
    assert "mozilla" not in text and "\n\n" not in text and "push again later" in text


@pytest.fixture
def not_a_hub() -> Iterator[str]:
    """A web server on 127.0.0.1 that answers every request with an HTML page."""
    with serving(lambda method, path: (200, {"Content-Type": "text/html"}, b"<html><body>hello</body></html>")) as url:
        yield url


def test_an_endpoint_that_is_not_a_hub_is_named_with_a_hint(weighed: Path, not_a_hub: str) -> None:
    env = {**os.environ, "HF_ENDPOINT": not_a_hub, "HF_TOKEN": HUB_TOKEN}
    done = hubpub("push", "--manifest", str(weighed), "--branch", "main", cwd=weighed.parent, env=env)
    assert done.returncode in (1, 2)
    assert "internal error" not in done.stderr and "HF_ENDPOINT" in done.stderr


# 8. init flows into check ----------------------------------------------------------------------------------------


def test_init_then_check_flows(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "quantize.py").write_text("# recipe\n")
    (tmp_path / "log.txt").write_text("done\n")
    done = hubpub("init", str(checkpoints["main"]), "--repo-id", "me/Tiny-INT8", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = yaml.safe_load((tmp_path / "branches.yaml").read_text())
    assert data["title"] == "Tiny-INT8" and data["files"] == {"recipe": "quantize.py", "log": "log.txt"}
    rendered = hubpub("render", cwd=tmp_path)
    assert rendered.returncode == 2
    todos = [line for line in rendered.stderr.splitlines() if "TODO" in line]
    assert len(todos) >= 4  # every TODO in one run: base_model, license, method.name, calibration.samples
    assert "base_model: base_model" not in rendered.stderr
    checked = hubpub("check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "still say TODO" in checked.stderr


# 9 and 10. render --check and render after check -----------------------------------------------------------------


def test_render_check_sees_text_appended_after_the_provenance(project: Path) -> None:
    assert hubpub("render", "--manifest", str(project), cwd=project.parent).returncode == 0
    card = project.parent / "cards" / "main" / "README.md"
    card.write_text(card.read_text() + "\nAppended by hand.\n")
    done = hubpub("render", "--check", "--manifest", str(project), cwd=project.parent)
    assert done.returncode == 1 and "+Appended by hand." not in done.stdout and "-Appended by hand." in done.stdout


@pytest.mark.slow
def test_render_after_check_does_not_import_torch(weighed: Path, checkpoints: dict[str, Path]) -> None:
    assert hubpub("check", "--manifest", str(weighed), cwd=weighed.parent).returncode == 0
    probe = (
        "import sys\n"
        "from publish.cli.main import main\n"
        f"sys.argv = ['hubpub', 'render', '--manifest', {str(weighed)!r}]\n"
        "try:\n    main()\nexcept SystemExit as done:\n    code = done.code\n"
        "print('exit', code, 'heavy', sorted(m for m in ('torch', 'compressed_tensors') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], check=False, cwd=weighed.parent, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ))
    assert "exit 0 heavy []" in done.stdout, done.stdout + done.stderr


def test_a_missing_variant_folder_in_point_manifest_helper_is_real(project: Path, checkpoints: dict[str, Path]) -> None:
    # Guard for the tests above: the fixture points at folders that exist.
    manifest = load_manifest(point_manifest(project, checkpoints))
    assert all(manifest.variant_path(v).is_dir() for v in manifest.variants)


def test_a_release_tag_taken_elsewhere_is_refused_before_the_branch_is_created(weighed: Path, hub: HubServer) -> None:
    from huggingface_hub import HfApi

    run_push(weighed, hub, "main")
    HfApi(endpoint=hub.url, token=HUB_TOKEN).create_tag(REPO, tag="v1-gs128", revision="main")
    hub.reset_records()
    done = hubpub_cli("push", "--manifest", str(weighed), "--branch", "gs128", "--tag", "v1", hub=hub,
                      cwd=weighed.parent)
    assert done.returncode == 1 and "v1-gs128" in done.stderr
    assert not any(r.method == "POST" and "/branch/" in r.path for r in hub.requests) and not uploads(hub)
