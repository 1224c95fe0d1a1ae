"""Saving what a diffusion batch generated (``[output] save_media = true``), so a user can look
at it: ``<run dir>/media/<config>/batch<i>-req<id>.{png,mp4,gif}``.

Images are PNG. Videos are MP4 (H.264) where ``imageio`` with ``imageio-ffmpeg`` is installed,
else animated GIF through Pillow (a note in the log says so). Called by the runtime after the
batch's end mark, so encoding and writing are never inside an energy window; warm-up batches are
not saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import RuntimeContext
from .inprocess import RunLog

#: Frame rate of saved videos when neither the configuration nor the model gives one.
DEFAULT_FPS = 8


def _mp4_writer() -> Any | None:
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return None
    return iio


class MediaSaver:
    def __init__(self, root: Path, fps: int, log: RunLog) -> None:
        self.root, self.fps, self.log = root, max(1, int(fps)), log
        self._iio = _mp4_writer()
        self.saved = 0
        self.note = ""

    @classmethod
    def for_context(cls, ctx: RuntimeContext, log: RunLog, fps: int | None = None) -> "MediaSaver | None":
        output = getattr(ctx.profile, "output", None)
        if output is None or not output.save_media:
            return None
        return cls(Path(ctx.run_dir) / "media" / ctx.config.key(), fps or DEFAULT_FPS, log)

    def save(self, index: int, warmup: bool, out: Any, requests: list[Any], batch: int) -> None:
        """Write batch ``index``'s output (images ``B,C,H,W`` or videos ``B,F,C,H,W`` in [0, 1])."""
        if warmup or out is None or not hasattr(out, "dim"):
            return
        import numpy as np

        arr = (out.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
        self.root.mkdir(parents=True, exist_ok=True)
        for j in range(arr.shape[0]):
            rid = requests[(index * batch + j) % len(requests)].id if requests else j
            stem = self.root / f"batch{index}-req{rid}"
            try:
                if arr.ndim == 4:
                    self._png(stem, arr[j])
                else:
                    self._video(stem, arr[j])
                self.saved += 1
            except OSError as exc:
                self.note = f"media not saved: {exc}"
                return
        kind = "videos" if arr.ndim == 5 else "images"
        fmt = "PNG" if arr.ndim == 4 else ("MP4" if self._iio is not None else
                                           "animated GIF (MP4 needs imageio and imageio-ffmpeg)")
        self.note = f"saved {self.saved} {kind} as {fmt} under {self.root}"

    def _png(self, stem: Path, chw: Any) -> None:
        from PIL import Image

        Image.fromarray(chw.transpose(1, 2, 0)).save(stem.with_suffix(".png"))

    def _video(self, stem: Path, fchw: Any) -> None:
        frames = fchw.transpose(0, 2, 3, 1)  # F, H, W, C
        if self._iio is not None:
            self._iio.imwrite(stem.with_suffix(".mp4"), frames, fps=self.fps, codec="libx264")
            return
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(stem.with_suffix(".gif"), save_all=True, append_images=images[1:],
                       duration=max(1, round(1000 / self.fps)), loop=0)
