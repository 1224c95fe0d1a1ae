"""Image tokens of vision-language models, and a record's text vs image prompt-token split.

How many prompt tokens one image takes, per model family, as vLLM's (and transformers')
processors count them:

* LLaVA-1.5 (``model_type = "llava"``): the image is resized and centre-cropped to the vision
  tower's ``image_size`` (336), so every image is ``(336 / 14)² = 576`` tokens (strategy
  ``default`` drops the CLS token; ``full`` keeps it: 577).
* Qwen2-VL / Qwen2.5-VL (``qwen2_vl``, ``qwen2_5_vl``): the image is resized to multiples of
  ``patch_size x spatial_merge_size`` (14 x 2 = 28) within ``[min_pixels, max_pixels]``
  (:func:`smart_resize`), then each 28x28 cell is one token: ``(h' / 28) x (w' / 28)``; a
  1024x768 image is 27 x 37 = 999 tokens. Qwen3-VL uses 16-px patches (factor 32).

The records' split (:func:`prompt_token_shares`) does not use these formulas: it takes the
server's ``usage.prompt_tokens`` per request (text and image tokens, as vLLM counted them) and
the request's text-only prompt tokens (:func:`.datasets_images.text_tokens`: the same chat
template around the text alone), so ``image tokens = prompt tokens - text tokens`` is each
image's tokens plus its one or two delimiter tokens (Qwen's vision start/end; LLaVA's newline).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .records import PromptTokens, RequestRow

SPLIT_METHOD = ("image tokens = server usage.prompt_tokens - the text-only prompt's tokens (same chat "
                "template, no image; so 1-2 image delimiter tokens per image count as image tokens)")
#: Qwen2.5-VL's processor defaults (preprocessor_config.json).
QWEN_MIN_PIXELS = 56 * 56
QWEN_MAX_PIXELS = 28 * 28 * 16384


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = QWEN_MIN_PIXELS,
                 max_pixels: int = QWEN_MAX_PIXELS) -> tuple[int, int]:
    """Qwen-VL's resize: both sides multiples of ``factor``, area within [min, max] pixels,
    aspect ratio kept as closely as possible (transformers' ``smart_resize``)."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def image_token_count(config: dict[str, Any], width: int, height: int,
                      preprocessor: dict[str, Any] | None = None) -> int:
    """Prompt tokens one ``width x height`` image takes in the model of ``config`` (a
    ``config.json`` dict); ValueError for a family this does not know."""
    kind = str(config.get("model_type", ""))
    if kind == "llava":
        vision = config.get("vision_config") or {}
        side = int(vision.get("image_size", 336)) // int(vision.get("patch_size", 14))
        full = config.get("vision_feature_select_strategy", "default") == "full"
        return side * side + (1 if full else 0)
    if kind in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        vision = config.get("vision_config") or {}
        patch = int(vision.get("patch_size", 16 if kind == "qwen3_vl" else 14))
        merge = int(vision.get("spatial_merge_size", 2))
        pre = preprocessor or {}
        size = pre.get("size") or {}
        lo = int(pre.get("min_pixels") or size.get("shortest_edge") or QWEN_MIN_PIXELS)
        hi = int(pre.get("max_pixels") or size.get("longest_edge") or QWEN_MAX_PIXELS)
        h, w = smart_resize(height, width, patch * merge, lo, hi)
        return (h // (patch * merge)) * (w // (patch * merge))
    raise ValueError(f"no image-token rule for model_type {kind!r}")


def prompt_token_shares(rows: Sequence[RequestRow]) -> PromptTokens | None:
    """Text vs image prompt tokens over the ok requests with images; None when no request
    carried images (every task but visual chat)."""
    ok = [r for r in rows if r.ok and r.images]
    if not ok:
        return None
    counted = [r for r in ok if r.image_tokens is not None]
    image = sum(int(r.image_tokens or 0) for r in counted)
    text = sum(r.input_tokens for r in counted) - image
    total = text + image
    sources = {r.image_source for r in ok if r.image_source}
    return PromptTokens(
        requests=len(ok), images=sum(r.images for r in ok), text_tokens=text, image_tokens=image,
        image_share=image / total if total > 0 else None,
        image_source=sources.pop() if len(sources) == 1 else ("mixed" if sources else None),
        method=SPLIT_METHOD)
