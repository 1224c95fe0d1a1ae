"""Synthetic requests: seeded random token ids of lengths drawn within the profile's limits,
with a readable word for each id as the prompt text."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from .entries import _Sample

if TYPE_CHECKING:
    from ..profile import Profile

#: Vocabulary size used for synthetic token ids when the caller does not give one.
DEFAULT_SYNTHETIC_VOCAB = 32000
#: Lowest token id drawn for random prompts (skips the special tokens most vocabularies start with).
_FIRST_RANDOM_ID = 10

_WORDS = (
    "energy time power batch token model request latency frontier steady state server queue "
    "prompt output image diffusion chat code measure watt joule second limit sweep record"
).split()


def _synthetic(profile: Profile, rng: random.Random, vocab: int, llm: bool,
               check: Callable[[], None] = lambda: None) -> list[_Sample]:
    d = profile.dataset
    out = []
    for _ in range(d.num_requests):
        check()
        n_in = rng.randint(d.min_prompt_tokens, d.max_prompt_tokens)
        n_out = rng.randint(d.min_output_tokens, d.max_output_tokens) if llm else 0
        ids = [rng.randrange(_FIRST_RANDOM_ID, vocab) for _ in range(n_in)]
        text = " ".join(_WORDS[i % len(_WORDS)] for i in ids)
        out.append(_Sample(prompt=text, messages=None, ids=ids, input_tokens=n_in, output_tokens=n_out))
    return out
