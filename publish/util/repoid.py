"""Hub repository ids, by huggingface_hub's own rules."""

from __future__ import annotations


def repo_id_problem(value: str, *, namespaced: bool = True) -> str | None:
    """Why `value` is not a valid model repo id (`namespace/name` when `namespaced`), or None."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if namespaced and value.count("/") != 1:
        return f"repo id {value!r} must be 'namespace/name', e.g. 'your-name/Model-INT8'"
    try:
        validate_repo_id(value)
    except HFValidationError as error:
        return str(error)
    return None
