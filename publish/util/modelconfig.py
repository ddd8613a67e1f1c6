"""Reading a model's config.json the way transformers does for multimodal models: text settings may sit under
`text_config` (Qwen3.6-VL, Gemma 3, Llama 4 …) instead of the top level."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text_setting(config: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    """`key` from `text_config` when the config has one that sets it, else from the top level."""
    config = config or {}
    text = config.get("text_config")
    if isinstance(text, Mapping) and key in text:
        return text[key]
    return config.get(key, default)
