"""Hugging Face dataset ids as ``dataset.path`` (``org/name``, when no such file exists): the
``train`` split through the optional ``datasets`` package, imported only when an id is loaded."""

from __future__ import annotations

import re

from ..errors import InputError
from .entries import _Candidate

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _is_hf_id(text: str) -> bool:
    return bool(_HF_ID.match(text)) and not text.endswith((".json", ".jsonl", ".gz", ".tsv"))


def _hf_candidates(name: str, dataset_id: str) -> list[_Candidate | None]:
    """Rows of a Hugging Face dataset's ``train`` split (needs the ``datasets`` package and the
    hub, or its local cache). Columns: ShareGPT ``conversations``; HumanEval ``prompt`` and
    ``canonical_solution``; PartiPrompts ``Prompt``; JSONL-like ``prompt``/``messages``/``output_len``."""
    try:
        import datasets as hf  # optional
    except ImportError:
        raise InputError(dataset_id, "dataset.path", "no such file; to load a Hugging Face dataset "
                         "id install the `datasets` package, or download the file and give its path") from None
    try:
        rows = hf.load_dataset(dataset_id, split="train")
    except Exception as exc:  # noqa: BLE001 - any loader failure is bad input
        raise InputError(dataset_id, "dataset.path", f"cannot load dataset: {' '.join(str(exc).split())[:200]}") from None
    out: list[_Candidate | None] = []
    for n, row in enumerate(rows):
        where = f"row {n}"
        try:
            if name == "sharegpt":
                turns = row["conversations"]
                if len(turns) < 2:
                    continue
                pair = None
                for i, t in enumerate(turns[:-1]):
                    if t["from"] == "human":
                        if turns[i + 1]["from"] == "gpt":
                            pair = _Candidate(prompt=str(t["value"]), reference=str(turns[i + 1]["value"]))
                        break
                out.append(pair)
            elif name == "humaneval":
                out.append(_Candidate(prompt=str(row["prompt"]), reference=str(row["canonical_solution"])))
            elif name == "partiprompts":
                out.append(_Candidate(prompt=str(row.get("Prompt") or row["prompt"])))
            else:
                messages = row.get("messages")
                out.append(_Candidate(
                    prompt=None if messages else str(row["prompt"]),
                    messages=[{"role": str(m["role"]), "content": str(m["content"])} for m in messages]
                    if messages else None,
                    output_len=int(row["output_len"]) if row.get("output_len") else None,
                ))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(dataset_id, where, f"unexpected row layout ({type(exc).__name__}: {exc})") from None
    return out
