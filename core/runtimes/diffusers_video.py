"""The diffusers runtime for text-to-video and image-to-video, in this process (ML.ENERGY eq. 1
per video).

As for text-to-image (:mod:`.diffusers_rt`, whose batch loop this shares): warm-up batches, then
``load.batches`` measured batches of ``batch_size`` videos, each bracketed by a CUDA synchronise
and an energy-counter mark; energy per video = batch energy / B. Every batch's phases are marked
on the run clock (Encode from the batch's start, Denoise from the denoiser's first call with the
end of every step, Decode from the VAE decoder's first call, and the batch's end): analysis turns
the marks into the record's ``phases``.

Sweep axes: ``batch_size``, ``num_inference_steps``, ``resolution``, ``num_frames`` and ``fps``
(where the pipeline takes it: SVD); what the configuration leaves out is the model's default
(the shape's ``defaults``). Image-to-video takes each request's first image
(``Request.images``, e.g. ``[dataset] first_frames = "synthetic"``) rendered at the
configuration's resolution.

Models: with ``weights = "dummy"`` a shape from ``core/data/models`` (``modelscope-t2v``,
``svd-xt``, ``wan2.1-t2v-1.3b`` and the CPU test shapes ``tiny-t2v``, ``tiny-svd``,
``tiny-wan``) assembled by :mod:`.video_pipelines`; with ``weights = "pretrained"`` any diffusers
pipeline id or directory (``DiffusionPipeline.from_pretrained``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from ..dummy_init import describe
from ..errors import InputError, RunFailure
from .base import RuntimeContext, RuntimeResult
from .diffusers_rt import DiffusersRuntime
from .inprocess import RealTime, RunLog, as_run_failure, drive_sim, free_accelerator_memory, load_shape, one_gpu_setup
from .video_pipelines import build_video_pipeline, check_shape, defaults, takes_fps

#: Hugging Face ids mapped to the shipped video shapes, for ``weights = "dummy"``.
VIDEO_ALIASES: dict[str, str] = {
    "ali-vilab/text-to-video-ms-1.7b": "modelscope-t2v",
    "damo-vilab/text-to-video-ms-1.7b": "modelscope-t2v",
    "stabilityai/stable-video-diffusion-img2vid-xt": "svd-xt",
    "wan-ai/wan2.1-t2v-1.3b-diffusers": "wan2.1-t2v-1.3b",
}


class VideoRuntime(DiffusersRuntime):
    """Text-to-video and image-to-video with diffusers; the pipeline is kept between
    configurations of a sweep (same model, dtype and device)."""

    def __init__(self) -> None:
        super().__init__()
        self._shape: dict[str, Any] = {}

    def _load(self, ctx: RuntimeContext, device: str, dtype: Any, log: RunLog) -> Any:
        m = ctx.profile.model
        key = (m.id, m.weights, str(dtype), device)
        if self._key == key and self._pipe is not None:
            return self._pipe
        self._pipe = self._key = None
        free_accelerator_memory()
        t0 = time.perf_counter()
        seed = ctx.profile.dataset.seed
        try:
            if m.weights == "dummy":
                shape = load_shape(VIDEO_ALIASES.get(m.id.lower(), m.id), "video pipeline")
                check_shape(shape, m.id, ctx.profile.task)
                pipe = build_video_pipeline(shape, device, dtype, seed)
                self._init_line = f"weights: dummy, init {describe(seed)}"
            else:
                from diffusers import DiffusionPipeline

                shape = {}
                pipe = DiffusionPipeline.from_pretrained(m.id, torch_dtype=dtype).to(device)
                self._init_line = None
        except (InputError, RunFailure):
            raise
        except Exception as exc:
            raise as_run_failure(exc, f"loading {m.id}", f"cannot load pipeline {m.id}") from exc
        pipe.set_progress_bar_config(disable=True)
        log.line(f"loaded {type(pipe).__name__} {m.id} ({m.weights}) on {device} in {time.perf_counter() - t0:.1f} s")
        self._key, self._pipe, self._shape = key, pipe, shape
        return pipe

    def run(self, ctx: RuntimeContext) -> RuntimeResult:
        try:
            import diffusers  # noqa: F401
            import torch
        except ImportError as exc:
            from ..errors import missing_dependency

            raise missing_dependency(exc, "the diffusers runtime", "profile") from None
        cfg = ctx.config
        batch = int(cfg.batch_size or 1)
        log, device, dtype = one_gpu_setup(ctx, "diffusers")
        rt = RealTime(ctx.clock)
        try:
            pipe = self._load(ctx, device, dtype, log)
            if self._init_line:
                log.pin(self._init_line)
            d = defaults(self._shape, pipe)
            steps = int(cfg.num_inference_steps or d.get("num_inference_steps", 50))
            frames = cfg.num_frames or d.get("num_frames")
            width, height = (cfg.width, cfg.height) if cfg.width and cfg.height else (d.get("width"), d.get("height"))
            fps = cfg.fps or d.get("fps")
            args: dict[str, Any] = dict(num_inference_steps=steps, output_type="pt")
            args.update({k: v for k, v in (("num_frames", frames), ("width", width), ("height", height)) if v})
            temporal = int(getattr(pipe, "vae_scale_factor_temporal", 1) or 1)
            if frames and temporal > 1 and (int(frames) - 1) % temporal:
                # (the pipeline would round it silently, and the record would name the wrong count)
                raise RunFailure(f"{type(pipe).__name__} needs num_frames = {temporal}k + 1 (got {frames})")
            if cfg.fps is not None and not takes_fps(pipe):
                raise RunFailure(f"{type(pipe).__name__} takes no fps; remove sweep.fps")
            if fps and takes_fps(pipe):
                args["fps"] = int(fps)
            args.update(self._shape.get("call_kwargs", {}))
            inputs = self._inputs(ctx, width, height)
            warmup, measured = ctx.profile.load.warmup_batches, ctx.profile.load.batches
            log.line(f"{measured} measured batches (+{warmup} warm-up) of {batch} videos, {steps} steps, "
                     f"{frames} frames, {width}x{height}" + (f", {args['fps']} fps" if "fps" in args else "")
                     + f", {str(dtype).removeprefix('torch.')} on {device}")
            if ctx.profile.task == "image-to-video" and ctx.requests and ctx.requests[0].images \
                    and ctx.requests[0].images[0].path is None:
                log.line("first frames: seeded synthetic images (ShareGPT4Video frames are not fetchable here)")
            seed = ctx.profile.dataset.seed

            def call_for(i: int, probe_kwargs: dict[str, Any]) -> Callable[[], Any]:
                batch_in = [inputs[(i * batch + j) % len(inputs)] for j in range(batch)]
                if ctx.profile.task == "image-to-video":  # rendered here: before the batch's start mark
                    batch_in = [_first_frame(ref, width, height) for ref in batch_in]
                gen = torch.Generator(device=device).manual_seed(seed + i)
                key = "image" if ctx.profile.task == "image-to-video" else "prompt"
                return lambda: pipe(**{key: batch_in}, generator=gen, **args, **probe_kwargs).frames

            return self.run_batches(ctx, rt, log, pipe, device, batch, call_for, "videos", int(fps or 0) or None)
        finally:
            drive_sim(ctx, 0.0)
            log.close()

    def _inputs(self, ctx: RuntimeContext, width: int | None, height: int | None) -> list[Any]:
        """Prompts (text-to-video) or first frames as PIL images (image-to-video), one per
        request, in request order."""
        if ctx.profile.task != "image-to-video":
            prompts = [r.prompt or "" for r in ctx.requests] or [""]
            if ctx.profile.model.weights == "dummy":
                # The character-level tokenizer spends one token per character: keep what the
                # model's sequence length holds (as the real tokenizer's truncation would).
                n = int(self._shape.get("tokenizer", {}).get("model_max_length", 77)) - 2
                prompts = [p[:n] for p in prompts]
            return prompts
        refs = [r.images[0] for r in ctx.requests if r.images]
        if not refs:
            raise RunFailure('image-to-video needs first frames: set [dataset] first_frames = "synthetic" '
                             "or use a dataset whose requests carry images")
        return refs


def _first_frame(ref: Any, width: int | None, height: int | None) -> Any:
    """The first frame as a PIL image at the configuration's size (synthetic images are drawn
    at that size; files are resized)."""
    from ..image_sets import render

    if width and height and ref.path is None:
        ref = msgspec.structs.replace(ref, width=int(width), height=int(height))
    img = render(ref)
    return img.resize((int(width), int(height))) if width and height and img.size != (width, height) else img
