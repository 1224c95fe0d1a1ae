"""Request types produced by dataset loaders and consumed by runtimes."""

from __future__ import annotations

import msgspec


class ImageRef(msgspec.Struct, kw_only=True, frozen=True):
    """One input image of a request (visual chat, image-to-video): a file, or a seeded synthetic
    image rendered on demand (``seed`` set, ``path`` None) so a workload of 1,000 requests does
    not hold 1,000 decoded images. ``width``/``height`` are the pixel size the model receives."""

    width: int
    height: int
    path: str | None = None
    seed: int | None = None


class Request(msgspec.Struct, kw_only=True, frozen=True):
    """One request of a workload. LLM requests carry a prompt (text, chat messages or token ids)
    and the reference output length; diffusion requests carry a text prompt."""

    id: int
    prompt: str | None = None
    #: Chat messages ``[{"role": ..., "content": ...}]`` for ``/v1/chat/completions``.
    messages: list[dict[str, str]] | None = None
    #: Token ids, used when the model has no tokenizer (``--skip-tokenizer-init``).
    prompt_token_ids: list[int] | None = None
    input_tokens: int = 0
    #: Reference output length (dummy weights: exact ``max_tokens``; real weights: the cap).
    output_tokens: int = 0
    #: Input images (visual chat: in the user message; image-to-video: the first frame).
    images: list[ImageRef] | None = None
