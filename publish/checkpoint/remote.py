"""Read a checkpoint already on a Hub revision, from its safetensors headers, so it can be checked like a local one.

Used when a variant's folder is absent (a CI runner without the weights): `hubpub check --remote` and card-only
pushes. Only headers (Range requests, through huggingface_hub) and the small JSON files are fetched. The values of
`weight_shape` tensors are not fetched (one request per module); checks that need them use the config's bits.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from publish.checkpoint.build import build_checkpoint
from publish.checkpoint.model import CONFIG_FILE, INDEX_FILE, SIDECAR_FILE, Checkpoint
from publish.checkpoint.read import architecture_of, find_quantization, parse_json_object, tensor_table
from publish.errors import HubError

if TYPE_CHECKING:
    from publish.checkpoint.architecture import ArchitectureCache
    from publish.hub.client import Hub
    from publish.hub.state import RemoteState


def read_remote_checkpoint(
    hub: Hub, repo_id: str, revision: str, architectures: ArchitectureCache | None = None,
    state: RemoteState | None = None,
) -> Checkpoint | None:
    """The Checkpoint stored on the branch `repo_id@revision`; None when the repository or branch does not exist.
    `state` is the branch's state when the caller has read it already."""
    state = state or hub.remote_state(repo_id, revision)
    if not state.branch_exists:
        return None
    files = {f.path: f.size for f in state.files}
    headers: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
    unreadable: dict[str, str] = {}
    for name in sorted(n for n in files if n.endswith(".safetensors")):
        try:
            meta = hub.file_header(repo_id, name, revision)
        except HubError as error:
            unreadable[name] = str(error)
            continue
        headers[name] = tensor_table(meta)
        end = max((info.data_offsets[1] for info in meta.tensors.values()), default=0)
        # Without the header length, a lower bound: the data alone must fit in the file.
        if end > files[name]:
            unreadable[name] = f"the header promises {end} bytes of data but the file has {files[name]}"
    downloaded = {name: Path(hub.download_path(repo_id, name, revision))
                  for name in (INDEX_FILE, CONFIG_FILE, SIDECAR_FILE) if name in files}
    index, index_error = _json(downloaded, INDEX_FILE)
    config, config_error = _json(downloaded, CONFIG_FILE)
    if config is None and config_error is None:
        config_error = f"{CONFIG_FILE} is missing on {repo_id}@{revision}"
    sidecar, _ = _json(downloaded, SIDECAR_FILE)
    # The same downloaded config.json, searched where vLLM looks for the quantization config.
    quantization_raw = find_quantization(downloaded[CONFIG_FILE]) if config is not None else None
    return build_checkpoint(
        location=f"{hub.endpoint}/{repo_id}/tree/{revision}", files=files, headers=headers, unreadable=unreadable,
        index=index, index_error=index_error, config=config, config_error=config_error,
        quantization_raw=quantization_raw, sidecar=sidecar, weight_shapes={},
        architecture=architecture_of(config, quantization_raw, architectures),
    )


def _json(downloaded: dict[str, Path], name: str) -> tuple[dict[str, Any] | None, str | None]:
    return parse_json_object(downloaded[name].read_bytes(), name) if name in downloaded else (None, None)
