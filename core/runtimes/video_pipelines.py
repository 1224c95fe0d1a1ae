"""Video pipelines for the diffusers runtime: assembled offline from the shapes in
``core/data/models`` (dummy weights), their call arguments, and the phase probe that marks a
batch's Encode, Denoise (each step) and Decode.

Shapes (JSON): ``pipeline`` (a diffusers class: ``TextToVideoSDPipeline``,
``StableVideoDiffusionPipeline``, ``WanPipeline``), one entry per model component with its
``class`` and config (``unet`` or ``transformer``, ``vae``, ``text_encoder`` or
``image_encoder``), ``scheduler``, optional ``tokenizer`` (``model_max_length``),
``feature_extractor`` (SVD), ``defaults`` (``num_frames``, ``width``, ``height``, ``fps``,
``num_inference_steps``: the model's own defaults) and ``call_kwargs`` (extra pipeline
arguments, e.g. SVD's ``decode_chunk_size``). Tokenizers are the character-level CLIP tokenizer
of :mod:`.diffusers_rt` (no files), with the model's sequence length.
"""

from __future__ import annotations

import time
from typing import Any

from ..dummy_init import init_dummy_, place_
from ..errors import InputError
from .diffusers_rt import char_clip_tokenizer

VIDEO_PIPELINES = ("TextToVideoSDPipeline", "StableVideoDiffusionPipeline", "WanPipeline")
#: Pipelines that take a first frame (image-to-video).
IMAGE_PIPELINES = ("StableVideoDiffusionPipeline",)
#: Model components built from a config, in seeding order (seed + position).
MODEL_PARTS = ("unet", "transformer", "vae", "text_encoder", "image_encoder")


def check_shape(shape: dict[str, Any], model_id: str, task: str) -> None:
    name = shape.get("pipeline")
    if name not in VIDEO_PIPELINES:
        raise InputError(model_id, "pipeline", f"{name!r} is not a video pipeline (one of {', '.join(VIDEO_PIPELINES)})")
    wants_image = task == "image-to-video"
    if wants_image != (name in IMAGE_PIPELINES):
        raise InputError(model_id, "pipeline", f"{name} does not do {task}")
    for part in ("vae", "scheduler"):
        if part not in shape:
            raise InputError(model_id, part, "missing from the video model shape")
    if "unet" not in shape and "transformer" not in shape:
        raise InputError(model_id, "unet", "a video shape needs a unet or a transformer")


def _model(part: str, cfg: dict[str, Any]) -> Any:
    import diffusers
    import transformers

    cfg = dict(cfg)
    name = cfg.pop("class")
    if part in ("text_encoder", "image_encoder"):
        cls = getattr(transformers, name)
        return cls(cls.config_class(**cfg))
    return getattr(diffusers, name)(**cfg)


def build_video_pipeline(shape: dict[str, Any], device: str, dtype: Any, seed: int) -> Any:
    """Assemble the shape's pipeline with dummy weights (:func:`~..dummy_init.init_dummy_`)."""
    import diffusers
    import torch

    components: dict[str, Any] = {}
    with torch.device(device):
        for offset, part in enumerate(MODEL_PARTS):
            if part not in shape:
                continue
            module = place_(_model(part, shape[part]), device)
            init_dummy_(module, seed + offset)
            if dtype != torch.float32:
                torch.nn.Module.to(module, dtype=dtype)
            components[part] = module.eval()
    if "text_encoder" in components:
        components["tokenizer"] = char_clip_tokenizer(**shape.get("tokenizer", {}))
    if "feature_extractor" in shape:
        components["feature_extractor"] = _feature_extractor(shape["feature_extractor"])
    sched = dict(shape["scheduler"])
    components["scheduler"] = getattr(diffusers, sched.pop("class")).from_config(sched)
    for part in MODEL_PARTS:
        if hasattr(components.get(part), "attn_processors"):
            split_large_attention_batches(components[part])
    return getattr(diffusers, shape["pipeline"])(**components)


#: CUDA caps a kernel grid's y and z dimensions at 65,535; PyTorch's flash and memory-efficient
#: attention kernels put the batch (and heads) there.
GRID_YZ_MAX = 65_535


class BatchSplitAttention:
    """Wraps a diffusers attention processor: a call whose batch x heads exceeds
    :data:`GRID_YZ_MAX` runs as several calls over slices of the batch (same kernels, same
    arithmetic), else passes straight through. SVD-XT's temporal attention at batch 4 with
    classifier-free guidance attends over 2 x 4 x (128 x 72) = 73,728 sequences of 25 frames, and
    the fused kernels fail with "CUDA error: invalid argument" on an H200. Made by :func:`wrap`,
    which gives each wrapper the inner processor's signature: diffusers drops the keyword
    arguments (``temb``, ``rotary_emb``, ...) a processor's ``__call__`` does not name."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def _call(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None,
              attention_mask: Any = None, *args: Any, **kwargs: Any) -> Any:
        import torch

        n = int(hidden_states.shape[0])
        per = max(1, GRID_YZ_MAX // max(1, int(getattr(attn, "heads", 1) or 1)))
        if n <= per:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)

        def part(t: Any, i: int) -> Any:
            return t[i:i + per] if t is not None and getattr(t, "shape", (0,))[0] == n else t

        outs = [self.inner(attn, hidden_states[i:i + per], part(encoder_hidden_states, i),
                           part(attention_mask, i), *args, **kwargs) for i in range(0, n, per)]
        if isinstance(outs[0], tuple):  # joint-attention processors return (hidden, encoder hidden)
            return tuple(None if parts[0] is None else torch.cat(parts) for parts in zip(*outs))
        return torch.cat(outs)

    @classmethod
    def wrap(cls, inner: Any) -> "BatchSplitAttention":
        import inspect

        if isinstance(inner, cls):
            return inner
        sig = inspect.signature(inner.__call__)  # bound: without self

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            return cls._call(self, *args, **kwargs)

        __call__.__signature__ = sig.replace(parameters=[
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *sig.parameters.values()])
        sub = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})
        return sub(inner)


def split_large_attention_batches(module: Any) -> None:
    """Wrap every attention processor of ``module`` in :class:`BatchSplitAttention`."""
    procs = module.attn_processors
    module.set_attn_processor({k: BatchSplitAttention.wrap(v) for k, v in procs.items()})


def _feature_extractor(cfg: dict[str, Any]) -> Any:
    """CLIP's image processor (the Pillow build where torchvision is missing)."""
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(**cfg)


def defaults(shape: dict[str, Any], pipe: Any) -> dict[str, int]:
    """The shape's default frames, size and fps, falling back to the pipeline's signature."""
    import inspect

    sig = inspect.signature(type(pipe).__call__).parameters
    out: dict[str, int] = {}
    for name in ("num_frames", "width", "height", "fps", "num_inference_steps"):
        v = shape.get("defaults", {}).get(name)
        if v is None and name in sig and isinstance(sig[name].default, int):
            v = sig[name].default
        if v is None and name in ("width", "height"):
            unet = getattr(pipe, "unet", None)
            if unet is not None and getattr(unet.config, "sample_size", None):
                v = int(unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))
        if v is not None:
            out[name] = int(v)
    return out


def takes_fps(pipe: Any) -> bool:
    import inspect

    return "fps" in inspect.signature(type(pipe).__call__).parameters


class PhaseProbe:
    """Stamps one batch's phases without synchronising the device mid-batch: the denoiser's first
    call (a forward pre-hook on the UNet / transformer: the encoders are done), the end of every
    step (the pipeline's step callback) and the VAE decoder's first call. On CUDA each stamp is a
    CUDA event on the current stream (the time the GPU got there, not when the work was queued);
    on the CPU a ``perf_counter`` reading. :meth:`flush`, after the batch's synchronised end,
    gives ``(run-clock time, label)`` for every stamp, from the batch's start."""

    def __init__(self, pipe: Any, device: str) -> None:
        self.pipe, self.device, self.cuda = pipe, device, device.startswith("cuda")
        self.batch = -1
        self._stamps: list[tuple[str, Any]] = []
        self._start: Any = None
        self._start_s = 0.0
        self._denoising = self._decoding = False
        denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        self._hook = denoiser.register_forward_pre_hook(self._on_denoiser)
        vae = pipe.vae
        self._decode = vae.decode

        def decode(*args: Any, **kwargs: Any) -> Any:
            if not self._decoding:
                self._decoding = True
                self._stamp("decode")
            return self._decode(*args, **kwargs)

        vae.decode = decode

    def _now(self) -> Any:
        if self.cuda:
            import torch

            ev = torch.cuda.Event(enable_timing=True)
            ev.record(torch.cuda.current_stream(self.device))  # the pipeline's device, from any thread
            return ev
        return time.perf_counter()

    def _stamp(self, text: str) -> None:
        if self._start is not None:
            self._stamps.append((text, self._now()))

    def start(self, batch: int) -> None:
        """Before batch ``batch``: forget the last batch's stamps."""
        self.batch, self._denoising, self._decoding = batch, False, False
        self._stamps, self._start = [], None

    def begin(self, start_s: float) -> None:
        """At the batch's synchronised start (run clock ``start_s``), in the thread that runs it."""
        self._start_s = start_s
        self._start = self._now()

    def flush(self) -> list[tuple[float, str]]:
        """Every stamp of the batch on the run clock (call after the batch's synchronise)."""
        if self._start is None:
            return []
        out = []
        for text, stamp in self._stamps:
            dt = self._start.elapsed_time(stamp) / 1e3 if self.cuda else stamp - self._start
            out.append((self._start_s + dt, text))
        self._stamps = []
        return out

    def _on_denoiser(self, _module: Any, _args: Any) -> None:
        if not self._denoising:
            self._denoising = True
            self._stamp("denoise")

    def step_end(self, step: int) -> None:
        self._stamp(f"step:{step}")

    def call_kwargs(self) -> dict[str, Any]:
        """The pipeline's step-callback arguments (``callback_on_step_end``, or the older
        ``callback``/``callback_steps`` of TextToVideoSDPipeline)."""
        import inspect

        params = inspect.signature(type(self.pipe).__call__).parameters
        if "callback_on_step_end" in params or "callback" not in params:
            def on_step_end(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                self.step_end(step)
                return kwargs

            return {"callback_on_step_end": on_step_end}
        return {"callback": lambda step, _t, _latents: self.step_end(step), "callback_steps": 1}

    def remove(self) -> None:
        self._hook.remove()
        try:
            del self.pipe.vae.decode
        except AttributeError:
            pass


