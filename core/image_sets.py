"""Input images for visual chat and image-to-video: seeded synthetic images and image files.

The ``synthetic-images`` set stands in for the paper's LLaVA instruction images (COCO), which
cannot be fetched here, and is labelled as synthetic in records. Its images are procedural
(gradients, boxes and discs on a seeded palette): cheap to render on demand from their
:class:`~.dataset_types.ImageRef` and compressible like photos rather than noise, at the sizes
and aspect ratios real chat images have. Image size changes a VLM's image-token count and so
its energy; :data:`SYNTHETIC_SIZES` are the sizes drawn when the profile does not fix one.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

from .dataset_types import ImageRef

#: (width, height) drawn for synthetic images: square 336² (LLaVA-1.5's input) to 1280x720.
SYNTHETIC_SIZES: tuple[tuple[int, int], ...] = (
    (336, 336), (448, 448), (512, 384), (640, 480), (800, 600), (1024, 768), (1280, 720), (720, 1280),
)


def synthetic_refs(n: int, seed: int, size: tuple[int, int] | None = None) -> list[ImageRef]:
    """``n`` synthetic image references: sizes drawn from :data:`SYNTHETIC_SIZES` (or all
    ``size``), each with its own seed derived from ``seed``."""
    rng = random.Random(f"synthetic-images:{seed}")
    out = []
    for _ in range(n):
        w, h = size if size is not None else rng.choice(SYNTHETIC_SIZES)
        out.append(ImageRef(width=int(w), height=int(h), seed=rng.getrandbits(31)))
    return out


def render(ref: ImageRef):  # noqa: ANN201 - PIL.Image.Image (Pillow is imported lazily)
    """The image ``ref`` names, as an RGB PIL image of ``ref.width x ref.height``: the file
    (resized if its size differs) or the seeded synthetic image."""
    from PIL import Image, ImageDraw

    if ref.path is not None:
        with Image.open(Path(ref.path)) as im:
            img = im.convert("RGB")
        if img.size != (ref.width, ref.height):
            img = img.resize((ref.width, ref.height))
        return img
    rng = random.Random(ref.seed if ref.seed is not None else 0)
    w, h = ref.width, ref.height
    c0 = tuple(rng.randrange(256) for _ in range(3))
    c1 = tuple(rng.randrange(256) for _ in range(3))
    # A vertical gradient from c0 to c1, then boxes and discs on top.
    column = Image.new("RGB", (1, h))
    for y in range(h):
        f = y / max(1, h - 1)
        column.putpixel((0, y), tuple(int(a + (b - a) * f) for a, b in zip(c0, c1)))
    img = column.resize((w, h))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 9)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = min(w, x0 + rng.randint(w // 16 + 1, w // 2 + 1)), min(h, y0 + rng.randint(h // 16 + 1, h // 2 + 1))
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
    return img


def encode(ref: ImageRef, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """``ref`` rendered and encoded (JPEG by default, as chat clients send photos)."""
    buf = io.BytesIO()
    render(ref).save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def data_url(ref: ImageRef) -> str:
    """``data:image/jpeg;base64,...`` for an OpenAI chat ``image_url`` content part."""
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(encode(ref)).decode("ascii")
