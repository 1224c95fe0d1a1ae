"""PartiPrompts: a UTF-8 TSV file whose header has a ``Prompt`` column (text-to-image prompts)."""

from __future__ import annotations

import csv
import io

from ..errors import InputError
from .entries import _Candidate
from .files import _line_of


def _partiprompts_candidates(data: bytes, source: str) -> list[_Candidate]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = _line_of(data, exc.start)
        raise InputError(source, f"line {line}", "not UTF-8 text") from None
    rows = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, None)
    if not header or "prompt" not in [h.strip().lower() for h in header]:
        raise InputError(source, "line 1", "expected a TSV header with a Prompt column")
    col = [h.strip().lower() for h in header].index("prompt")
    out = []
    for n, row in enumerate(rows, start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) <= col or not row[col].strip():
            raise InputError(source, f"line {n}", "empty Prompt")
        out.append(_Candidate(prompt=row[col].strip()))
    if not out:
        raise InputError(source, "", "no prompts in file")
    return out
