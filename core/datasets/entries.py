"""A dataset entry before token counting (:class:`_Candidate`, what every source's decoder
yields) and after (:class:`_Sample`, what :func:`.select._select` and the synthetic source give
:func:`~mle_tui.core.datasets.load_requests`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class _Candidate:
    """One dataset entry before token counting."""

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    #: Reference output text (ShareGPT gpt turn, HumanEval canonical solution).
    reference: str | None = None
    #: Explicit output length (JSONL ``output_len``).
    output_len: int | None = None


@dataclass(frozen=True)
class _Sample:
    prompt: str | None
    messages: list[dict[str, str]] | None
    ids: list[int] | None
    input_tokens: int
    output_tokens: int
