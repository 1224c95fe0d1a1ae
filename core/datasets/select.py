"""Sampling: candidates taken in (shuffled) order, token-counted and length-filtered until
``num_requests`` are accepted, topped up with replacement when the filtered pool is short."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import InputError
from .entries import _Candidate, _Sample
from .tokens import _Counter, _join_messages, estimate_tokens

if TYPE_CHECKING:
    from ..profile import Profile


def _select(
    cands: list[_Candidate], profile: Profile, counter: _Counter, rng: random.Random,
    source: str, note: Callable[[str], None], check: Callable[[], None] = lambda: None,
) -> list[_Sample]:
    """Take candidates in order, count tokens, apply the length filters (LLM tasks only)."""
    d = profile.dataset
    llm = profile.is_llm
    picked: list[_Sample] = []
    rejected = 0
    for c in cands:
        check()
        if len(picked) >= d.num_requests:
            break
        if c.messages is not None:
            ids = counter.message_ids(c.messages)
            n_in = len(ids) if ids is not None else estimate_tokens(_join_messages(c.messages))
        else:
            ids = counter.ids(c.prompt or "")
            n_in = len(ids) if ids is not None else estimate_tokens(c.prompt or "")
        n_out = 0
        if llm:
            if c.output_len is not None:
                n_out = c.output_len
            elif c.reference is not None:
                n_out = counter.count(c.reference)
            else:
                n_out = d.max_output_tokens
            if not (d.min_prompt_tokens <= n_in <= d.max_prompt_tokens
                    and d.min_output_tokens <= n_out <= d.max_output_tokens):
                rejected += 1
                continue
        picked.append(_Sample(c.prompt, c.messages, ids, n_in, n_out))
    if not picked:
        raise InputError(
            source, "dataset",
            f"none of {len(cands):,} entries passes the length filters "
            f"(prompt {d.min_prompt_tokens}..{d.max_prompt_tokens}, "
            f"output {d.min_output_tokens}..{d.max_output_tokens} tokens)",
        )
    if len(picked) < d.num_requests:
        missing = d.num_requests - len(picked)
        note(
            f"{source}: only {len(picked):,} entries pass the filters; "
            f"{missing:,} more drawn with replacement to reach num_requests={d.num_requests:,}"
        )
        picked.extend(rng.choices(picked, k=missing))
    return picked
