"""Token counting for dataset entries: a tokenizer's exact counts (a chat template for
messages), else the heuristic of :func:`estimate_tokens`."""

from __future__ import annotations

import math
from typing import Any, Protocol

#: Characters per token assumed by the heuristic counter (English text, BPE tokenizers).
CHARS_PER_TOKEN = 4.0


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


def estimate_tokens(text: str) -> int:
    """Heuristic token count: ``max(words, ceil(chars / 4))``; 0 for empty text."""
    if not text:
        return 0
    return max(len(text.split()), math.ceil(len(text) / CHARS_PER_TOKEN))


class _Counter:
    def __init__(self, tokenizer: Any | None) -> None:
        self.tokenizer = tokenizer

    def ids(self, text: str) -> list[int] | None:
        if self.tokenizer is None:
            return None
        return list(self.tokenizer.encode(text))

    def count(self, text: str) -> int:
        ids = self.ids(text)
        return estimate_tokens(text) if ids is None else len(ids)

    def message_ids(self, messages: list[dict[str, str]]) -> list[int] | None:
        if self.tokenizer is None:
            return None
        template = getattr(self.tokenizer, "apply_chat_template", None)
        if template is not None and getattr(self.tokenizer, "chat_template", None):
            try:
                out = template(messages, tokenize=True, add_generation_prompt=True)
                if isinstance(out, dict) or hasattr(out, "keys"):
                    out = out["input_ids"]
                return [int(i) for i in out]
            except Exception:  # noqa: BLE001 - fall back to plain encoding
                pass
        return self.ids(_join_messages(messages))


def _join_messages(messages: list[dict[str, str]]) -> str:
    return "\n".join(m.get("content", "") for m in messages)
