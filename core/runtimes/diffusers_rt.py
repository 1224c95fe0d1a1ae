"""The diffusers runtime: text-to-image in this process, measured batch by batch (ML.ENERGY).

Per configuration: ``load.warmup_batches`` warm-up batches, then ``load.batches`` measured
batches of ``batch_size`` prompts (PartiPrompts or any prompt dataset, cycled), each bracketed by
``torch.cuda.synchronize()`` followed by an energy-counter mark (``ctx.mark_energy``, whose
times become the batch's start and end) and measured as the GPU energy between them
(``ctx.energy_between``); energy per image = batch energy / B (eq. 1), done by the runner.
While a batch runs the batch trace reports ``running = B`` (0 between batches) at 10 Hz.

Models: any ``AutoPipelineForText2Image`` id or local directory (``weights = "pretrained"``), or,
with ``weights = "dummy"``, a pipeline assembled offline from the config dicts shipped in
``core/data/models`` (``sd-2.1``, ``sdxl``; ``tiny-sd`` is a test shape for CPU tests) with the
project's dummy-weight scheme (:mod:`mle_tui.core.dummy_init`) and a character-level CLIP
tokenizer that needs no files. Dummy weights run in bf16 on GPUs (fp32 on CPU) and every batch's
images are checked to be finite. Each batch's phases (encode, denoise steps, decode) are stamped
on the device and marked through ``ctx.on_mark`` after the batch (:class:`.video_pipelines.PhaseProbe`);
with ``[output] save_media = true`` its images are saved as PNG after its end mark
(:mod:`.media`). Text-to-video and image-to-video go to :mod:`.diffusers_video`, which shares
:meth:`DiffusersRuntime.run_batches`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from ..dummy_init import describe, init_dummy_, place_
from ..errors import InputError, RunFailure
from ..records import BatchRow
from .base import BatchSample, RuntimeContext, RuntimeResult
from .inprocess import (
    RealTime,
    RunLog,
    as_run_failure,
    drive_sim,
    free_accelerator_memory,
    load_shape,
    one_gpu_setup,
    synchronize,
)

#: Batch-trace period while batches run, s.
TRACE_PERIOD_S = 0.1


def _bytes_to_unicode() -> list[str]:
    """GPT-2 / CLIP byte-to-unicode table (printable stand-ins for the 256 byte values)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def char_clip_tokenizer(pad_token: str = "<|endoftext|>", model_max_length: int = 77) -> Any:
    """A CLIP tokenizer with a byte-level character vocabulary (514 ids) and no merges: needs no
    files, gives every prompt its own ids, and always encodes 77 tokens like the real one."""
    from transformers import CLIPTokenizer

    chars = _bytes_to_unicode()
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], pad_token=pad_token, model_max_length=model_max_length)


def build_dummy_pipeline(shape: dict[str, Any], device: str, dtype: Any, seed: int) -> Any:
    """Assemble a text-to-image pipeline from config dicts with dummy weights."""
    import diffusers
    import torch
    import transformers

    def text_encoder(cfg: dict[str, Any]) -> Any:
        cfg = dict(cfg)
        cls = getattr(transformers, cfg.pop("class", "CLIPTextModel"))
        return cls(transformers.CLIPTextConfig(**cfg))

    with torch.device(device):
        components: dict[str, Any] = {
            "unet": diffusers.UNet2DConditionModel(**shape["unet"]),
            "vae": diffusers.AutoencoderKL(**shape["vae"]),
            "text_encoder": text_encoder(shape["text_encoder"]),
            "tokenizer": char_clip_tokenizer(**shape.get("tokenizer", {})),
        }
        if "text_encoder_2" in shape:
            components["text_encoder_2"] = text_encoder(shape["text_encoder_2"])
            components["tokenizer_2"] = char_clip_tokenizer(**shape.get("tokenizer_2", {}))
    for offset, name in enumerate(("unet", "vae", "text_encoder", "text_encoder_2")):
        if name in components:
            init_dummy_(place_(components[name], device), seed + offset)
            if dtype != torch.float32:
                # nn.Module.to, not ModelMixin.to: the latter warns about keep-in-fp32 modules
                # that dummy models built from configs do not have.
                torch.nn.Module.to(components[name], dtype=dtype)
            components[name].eval()
    sched = dict(shape["scheduler"])
    components["scheduler"] = getattr(diffusers, sched.pop("class")).from_config(sched)
    pipe_cls = getattr(diffusers, shape["pipeline"])
    if shape["pipeline"] == "StableDiffusionPipeline":
        components.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = pipe_cls(**components, **shape.get("pipeline_kwargs", {}))
    return pipe


def _default_size(pipe: Any) -> tuple[int, int]:
    scale = getattr(pipe, "vae_scale_factor", 8)
    size = int(pipe.unet.config.sample_size) * int(scale)
    return size, size


class DiffusersRuntime:
    """Text-to-image with diffusers, in-process. The pipeline is kept between configurations
    of a sweep (same model, dtype and device)."""

    name = "diffusers"

    def __init__(self) -> None:
        self._key: tuple[str, ...] | None = None
        self._pipe: Any = None
        self._init_line: str | None = None
        self._video: Any = None

    # ------------------------------------------------------------------ loading

    def _pipeline(self, ctx: RuntimeContext, device: str, dtype: Any, log: RunLog) -> Any:
        m = ctx.profile.model
        key = (m.id, m.weights, str(dtype), device)
        if self._key == key and self._pipe is not None:
            return self._pipe
        self._pipe = None
        self._key = None
        free_accelerator_memory()
        t0 = time.perf_counter()
        seed = ctx.profile.dataset.seed
        try:
            if m.weights == "dummy":
                shape = load_shape(m.id, "diffusion pipeline")
                for part in ("pipeline", "unet", "vae", "text_encoder", "scheduler"):
                    if part not in shape:
                        raise InputError(m.id, part, "missing from the diffusion model shape")
                pipe = build_dummy_pipeline(shape, device, dtype, seed)
                self._init_line = f"weights: dummy, init {describe(seed)}"
            else:
                from diffusers import AutoPipelineForText2Image

                pipe = AutoPipelineForText2Image.from_pretrained(m.id, torch_dtype=dtype)
                pipe = pipe.to(device)
                self._init_line = None
        except (InputError, RunFailure):
            raise
        except Exception as exc:
            raise as_run_failure(exc, f"loading {m.id}", f"cannot load pipeline {m.id}") from exc
        pipe.set_progress_bar_config(disable=True)
        log.line(f"loaded {type(pipe).__name__} {m.id} ({m.weights}) on {device} in {time.perf_counter() - t0:.1f} s")
        self._key, self._pipe = key, pipe
        return pipe

    # ------------------------------------------------------------------ running

    def run(self, ctx: RuntimeContext) -> RuntimeResult:
        if ctx.profile.is_video:
            if self._video is None:
                from .diffusers_video import VideoRuntime

                self._video = VideoRuntime()
            return self._video.run(ctx)
        try:
            import diffusers  # noqa: F401
            import torch
        except ImportError as exc:
            from ..errors import missing_dependency

            raise missing_dependency(exc, "the diffusers runtime", "profile") from None
        cfg = ctx.config
        batch = int(cfg.batch_size or 1)
        steps = int(cfg.num_inference_steps or 50)
        log, device, dtype = one_gpu_setup(ctx, "diffusers")
        rt = RealTime(ctx.clock)
        try:
            pipe = self._pipeline(ctx, device, dtype, log)
            if self._init_line:
                log.pin(self._init_line)
            width, height = (cfg.width, cfg.height) if cfg.width and cfg.height else _default_size(pipe)
            prompts = [r.prompt or "" for r in ctx.requests] or [""]
            if ctx.profile.model.weights == "dummy":
                # The character-level tokenizer spends one token per character: cut prompts to the
                # 75 tokens CLIP keeps (as the real tokenizer's truncation would) without warnings.
                prompts = [p[:75] for p in prompts]
            warmup = ctx.profile.load.warmup_batches
            measured = ctx.profile.load.batches
            log.line(
                f"{measured} measured batches (+{warmup} warm-up) of {batch} images, {steps} steps, "
                f"{width}x{height}, {str(dtype).removeprefix('torch.')} on {device}"
            )
            seed = ctx.profile.dataset.seed

            def call_for(i: int, probe_kwargs: dict[str, Any]) -> Callable[[], Any]:
                batch_prompts = [prompts[(i * batch + j) % len(prompts)] for j in range(batch)]
                gen = torch.Generator(device=device).manual_seed(seed + i)
                return lambda: pipe(prompt=batch_prompts, num_inference_steps=steps, width=width, height=height,
                                    generator=gen, output_type="pt", **probe_kwargs).images

            return self.run_batches(ctx, rt, log, pipe, device, batch, call_for, "images")
        finally:
            drive_sim(ctx, 0.0)
            log.close()

    def run_batches(self, ctx: RuntimeContext, rt: RealTime, log: RunLog, pipe: Any, device: str, batch: int,
                    call_for: Callable[[int, dict[str, Any]], Callable[[], Any]], what: str,
                    fps: int | None = None) -> RuntimeResult:
        """Warm-up and measured batches: ``call_for(i, step_callback_kwargs)`` gives batch ``i``'s
        pipeline call (returning its output tensor). Each batch's phases are marked through
        ``ctx.on_mark`` and its media saved when the profile asks, after the batch's end."""
        from ..measure.phases import label
        from .media import MediaSaver
        from .video_pipelines import PhaseProbe

        warmup = ctx.profile.load.warmup_batches
        total = warmup + ctx.profile.load.batches
        rows: list[BatchRow] = []
        pending: list[BatchRow] = []
        probe = PhaseProbe(pipe, device)
        saver = MediaSaver.for_context(ctx, log, fps)
        try:
            for i in range(total):
                if ctx.cancel.is_set():
                    raise RunFailure("stopped by request")
                probe.start(i)
                call = call_for(i, probe.call_kwargs())
                waiting = (total - i - 1) * batch
                t0, t1, out = self._one_batch(ctx, rt, device, call, batch, waiting, what, probe.begin)
                # The batch's phases, stamped on the device while it ran, on the run clock.
                ctx.on_mark(t0, label(i, "encode"))
                for t, text in probe.flush():
                    ctx.on_mark(t, label(i, text))
                ctx.on_mark(t1, label(i, "end"))
                if saver is not None:
                    saver.save(i, i < warmup, out, ctx.requests, batch)
                del out
                # Finish earlier rows now that the sampler has read past their end.
                for row in pending:
                    self._finish(ctx, row, rows)
                pending = [
                    BatchRow(index=i, start_s=t0, end_s=t1, latency_s=t1 - t0, energy_j=float("nan"),
                             batch_size=batch, warmup=i < warmup)
                ]
        finally:
            probe.remove()
        # Let the sampler read past the last batch's end before asking for its energy.
        rt.wait(2.5 * TRACE_PERIOD_S, None)
        for row in pending:
            self._finish(ctx, row, rows)
        ctx.on_batch(BatchSample(t_s=rt.now_s(), running=0.0, waiting=0.0))
        lat = [r.latency_s for r in rows if not r.warmup]
        log.line(f"measured batch latency {sum(lat) / len(lat):.3f} s mean over {len(lat)} batches")
        if saver is not None and saver.note:
            log.line(saver.note)
        return RuntimeResult(
            batches=rows,
            log_tail=log.tail(),
            batch_source=f"diffusers pipeline, {1 / TRACE_PERIOD_S:.0f} Hz",
        )

    def _finish(self, ctx: RuntimeContext, row: BatchRow, rows: list[BatchRow]) -> None:
        row.energy_j = float(ctx.energy_between(row.start_s, row.end_s))
        rows.append(row)
        ctx.on_batch_done(row)

    def _one_batch(
        self, ctx: RuntimeContext, rt: RealTime, device: str, call: Callable[[], Any], batch: int, waiting: int,
        what: str, on_start: Callable[[float], None],
    ) -> tuple[float, float, Any]:
        """Run one batch in a worker thread while this thread reports the batch trace; returns
        the batch's (start, end) on the run clock -- from the energy marks where a sampler marks
        (the start shifted past the mark's own counter read), else the synchronised stamps --
        and its output. ``on_start`` gets the start as soon as it is known."""
        import torch

        box: dict[str, Any] = {}
        started = threading.Event()

        def work() -> None:
            try:
                synchronize(device)
                before = time.perf_counter()
                m0 = ctx.mark_energy()  # the energy counter at the synchronised start
                box["t0"] = time.perf_counter()
                # The batch starts once the mark's counter read returns: shift the mark's time by it.
                box["m0"] = m0 + (box["t0"] - before)
                on_start(box["m0"] if math.isfinite(box["m0"]) else rt.to_run(box["t0"]))
                started.set()
                with torch.inference_mode():
                    out = call()
                synchronize(device)
                box["t1"] = time.perf_counter()
                box["m1"] = ctx.mark_energy()  # stamped before its read: the synchronised end
                box["out"] = out
                box["finite"] = bool(torch.isfinite(out).all().item()) if hasattr(out, "dtype") else True
            except BaseException as exc:  # re-raised on the calling thread
                box["error"] = exc
            finally:
                started.set()
        ctx.on_batch(BatchSample(t_s=rt.now_s(), running=0.0, waiting=float(waiting + batch)))
        thread = threading.Thread(target=work, name="diffusers-batch", daemon=True)
        drive_sim(ctx, 1.0)
        thread.start()
        started.wait()
        if "t0" in box:  # a sample at the batch's exact start, so every batch shows in the trace
            rt.now_s()
            start = box["m0"] if math.isfinite(box["m0"]) else rt.to_run(box["t0"])  # the batch's own start
            ctx.on_batch(BatchSample(t_s=start, running=float(batch), waiting=float(waiting)))
            thread.join(TRACE_PERIOD_S)
        while thread.is_alive():
            ctx.on_batch(BatchSample(t_s=rt.now_s(), running=float(batch), waiting=float(waiting)))
            thread.join(TRACE_PERIOD_S)
        if "error" in box:
            drive_sim(ctx, 0.0)
            exc = box["error"]
            raise as_run_failure(exc, f"at batch {batch}", f"pipeline failed at batch {batch}") from exc
        t0 = box["m0"] if math.isfinite(box["m0"]) else rt.to_run(box["t0"])
        t1 = box["m1"] if math.isfinite(box["m1"]) else rt.to_run(box["t1"])
        # On a simulated GPU under a power limit work runs at ``speed_factor`` (<= 1) of full
        # speed: stretch the batch accordingly, still reporting it as running.
        if ctx.sim_gpus:
            rate = min(g.speed_factor(1.0) for g in ctx.sim_gpus)
            if 0.0 < rate < 1.0:
                t1_sim = t0 + (t1 - t0) / rate
                while rt.now_s() < t1_sim:
                    ctx.on_batch(BatchSample(t_s=rt.now_s(), running=float(batch), waiting=float(waiting)))
                    rt.wait(min(TRACE_PERIOD_S, max(0.0, t1_sim - rt.now_s())), None)
                t1 = t1_sim
                drive_sim(ctx, 0.0)
                m1 = ctx.mark_energy()  # the stretched end, once the simulated load is off
                t1 = m1 if math.isfinite(m1) else t1
        drive_sim(ctx, 0.0)
        ctx.on_batch(BatchSample(t_s=rt.now_s(), running=0.0, waiting=float(waiting)))
        if not box.get("finite", True):
            raise RunFailure(
                f"non-finite {what} at batch {batch} (NaN/Inf from the weights in this dtype; use bfloat16)"
            )
        return t0, t1, box.get("out")
