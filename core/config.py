"""One point of a sweep: the configuration a record measures."""

from __future__ import annotations

import msgspec


class Config(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    max_num_seqs: int | None = None
    batch_size: int | None = None
    num_inference_steps: int | None = None
    width: int | None = None
    height: int | None = None
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    #: Requested GPU power limit in W; ``None`` leaves the limit untouched.
    power_limit_w: int | None = None
    #: Visual chat: every input image resized to ``"WxH"``; None keeps the dataset's sizes.
    image_size: str | None = None
    #: Video tasks: frames per video and the frame rate the pipeline is told (SVD's ``fps``
    #: conditioning); None: the model shape's default.
    num_frames: int | None = None
    fps: int | None = None

    @property
    def num_gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def batch(self) -> int:
        """The configuration's maximum batch size (B)."""
        return int(self.max_num_seqs or self.batch_size or 1)

    def key(self) -> str:
        """Stable, file-name-safe identifier, e.g. ``mns8-tp1-pl300``."""
        parts = []
        if self.max_num_seqs is not None:
            parts.append(f"mns{self.max_num_seqs}")
        if self.batch_size is not None:
            parts.append(f"bs{self.batch_size}")
        if self.num_inference_steps is not None:
            parts.append(f"steps{self.num_inference_steps}")
        if self.width is not None and self.height is not None:
            parts.append(f"{self.width}x{self.height}")
        if self.num_frames is not None:
            parts.append(f"f{self.num_frames}")
        if self.fps is not None:
            parts.append(f"fps{self.fps}")
        parts.append(f"tp{self.tensor_parallel}")
        if self.pipeline_parallel != 1:
            parts.append(f"pp{self.pipeline_parallel}")
        parts.append(f"pl{self.power_limit_w}" if self.power_limit_w is not None else "pldefault")
        if self.image_size is not None:
            parts.append(f"img{self.image_size}")
        return "-".join(parts)

    def label(self) -> str:
        """Short human label for tables."""
        bits = []
        if self.max_num_seqs is not None:
            bits.append(f"B={self.max_num_seqs}")
        if self.batch_size is not None:
            bits.append(f"B={self.batch_size}")
        if self.num_inference_steps is not None:
            bits.append(f"steps={self.num_inference_steps}")
        if self.width is not None:
            bits.append(f"{self.width}x{self.height}")
        if self.num_frames is not None:
            bits.append(f"{self.num_frames} frames")
        if self.fps is not None:
            bits.append(f"{self.fps} fps")
        if self.num_gpus > 1:
            bits.append(f"TP={self.tensor_parallel}" + (f",PP={self.pipeline_parallel}" if self.pipeline_parallel > 1 else ""))
        bits.append(f"{self.power_limit_w} W" if self.power_limit_w is not None else "default W")
        if self.image_size is not None:
            bits.append(f"img {self.image_size}")
        return " ".join(bits)
