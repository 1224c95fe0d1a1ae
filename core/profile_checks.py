"""Checks of a decoded profile beyond types: finite numbers, sane sizes, axes that apply to the
task, targets with a unit and a metric the task has; power limits against the GPUs' ranges;
and profile equality by value (not by TOML text).

:func:`check_profile` raises ``ValueError("field.path: problem")`` from
``Profile.__post_init__``, so :func:`.profile.decode_profile` reports ``FILE: FIELD: PROBLEM``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec

from .errors import InputError
from .sweep import parse_axis

if TYPE_CHECKING:
    from .profile import Profile
    from .records import GpuInfo

#: Sweep size (configurations).
MAX_CONFIGS = 1024
#: dataset.num_requests x dataset.repeats, and dataset.requests_per_seq x the largest B.
MAX_REQUESTS = 1_000_000
#: Prompt and output length bounds (tokens).
MAX_TOKENS = 1_048_576
#: GPUs one configuration or one host's index list can name (also the simulated GPU count).
MAX_GPUS = 64
#: Per-axis value caps: a batch, a diffusion batch, denoising steps, an image side (px).
MAX_AXIS = {"max_num_seqs": 65_536, "batch_size": 4_096, "num_inference_steps": 10_000,
            "tensor_parallel": MAX_GPUS, "pipeline_parallel": MAX_GPUS, "power_limit_w": 10_000,
            "num_frames": 10_000, "fps": 1_000}
MAX_RESOLUTION_PX = 16_384
MAX_BATCHES = 10_000
#: Slower arrivals make a sweep of days per configuration (and the simulator's idle loops long).
MIN_REQUEST_RATE = 0.001

LLM_METRICS = ("tpot", "ttft", "itl", "e2e")
IMAGE_METRICS = ("batch_latency",)
#: Fields where +inf is a documented value (request_rate = inf: everything at t = 0).
INF_ALLOWED = {"load.request_rate"}


def metrics_for_task(task: str) -> tuple[str, ...]:
    """The latency metrics a task's records have data for."""
    return IMAGE_METRICS if task in ("text-to-image", "text-to-video", "image-to-video") else LLM_METRICS


def _walk(value: Any, path: str):
    """(path, float) for every float inside ``value`` (Structs, lists, dicts)."""
    if isinstance(value, bool):
        return
    if isinstance(value, float):
        yield path, value
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _walk(getattr(value, name), f"{path}.{name}" if path else name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk(item, path)
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from _walk(item, f"{path}.{k}")


def _axis_max(profile: "Profile", name: str) -> int:
    return max(profile.sweep.axis(name) or [1])


def check_profile(p: "Profile") -> None:
    """Raise ``ValueError("field: problem")`` for the first problem found."""
    for path, x in _walk(p, ""):
        if math.isnan(x) or (math.isinf(x) and not (path in INF_ALLOWED and x > 0)):
            raise ValueError(f"{path}: {x} is not a finite number")
    from .datasets_images import check_visual_profile

    check_visual_profile(p)
    llm = p.is_llm
    s = p.sweep
    video = p.task in ("text-to-video", "image-to-video")
    not_for = (("batch_size", "num_inference_steps", "resolution", "num_frames", "fps") if llm
               else ("max_num_seqs",) if video else ("max_num_seqs", "num_frames", "fps"))
    for name in not_for:
        if getattr(s, name) is not None:
            kind = "LLM" if llm else p.task
            use = "max_num_seqs" if not llm else "batch_size"
            hint = ("remove it" if llm or name in ("num_frames", "fps") else f"the batch size is sweep.{use}")
            raise ValueError(f"sweep.{name}: does not apply to a {kind} task ({p.task}); {hint}")
    if p.dataset.first_frames is not None and p.task != "image-to-video":
        raise ValueError(f"dataset.first_frames: applies to image-to-video only (task is {p.task})")
    if not llm and p.dataset.requests_per_seq:
        raise ValueError("dataset.requests_per_seq: applies to LLM tasks only")
    if p.runtime in ("diffusers", "transformers"):
        for name in ("tensor_parallel", "pipeline_parallel"):
            if _axis_max(p, name) > 1:
                raise ValueError(f"sweep.{name}: the {p.runtime} runtime runs on one GPU (1 only)")
    for name, cap in MAX_AXIS.items():
        if getattr(s, name) is not None and _axis_max(p, name) > cap:
            raise ValueError(f"sweep.{name}: {_axis_max(p, name)} is above the limit of {cap}")
    for res in s.resolutions():
        w, _, h = res.lower().replace("×", "x").partition("x")
        if max(int(w), int(h)) > MAX_RESOLUTION_PX:
            raise ValueError(f"sweep.resolution: {res} is above {MAX_RESOLUTION_PX} px per side")
    n = 1
    for name in ("max_num_seqs", "batch_size", "num_inference_steps", "tensor_parallel",
                 "pipeline_parallel", "power_limit_w", "num_frames", "fps"):
        n *= max(1, len(s.axis(name)))
    n *= max(1, len(s.resolutions())) * max(1, len(s.image_sizes()))
    if n > MAX_CONFIGS:
        raise ValueError(f"sweep: {n:,} configurations; at most {MAX_CONFIGS:,} per sweep "
                         "(narrow an axis or split the sweep)")
    d = p.dataset
    if d.num_requests * d.repeats > MAX_REQUESTS:
        raise ValueError(f"dataset.repeats: num_requests x repeats = {d.num_requests * d.repeats:,}; "
                         f"at most {MAX_REQUESTS:,}")
    if llm and d.requests_per_seq * _axis_max(p, "max_num_seqs") > MAX_REQUESTS:
        raise ValueError(f"dataset.requests_per_seq: requests_per_seq x max_num_seqs = "
                         f"{d.requests_per_seq * _axis_max(p, 'max_num_seqs'):,}; at most {MAX_REQUESTS:,}")
    for name in ("min_prompt_tokens", "max_prompt_tokens", "min_output_tokens", "max_output_tokens"):
        if getattr(d, name) > MAX_TOKENS:
            raise ValueError(f"dataset.{name}: {getattr(d, name):,} is above {MAX_TOKENS:,} tokens")
    if p.load.request_rate < MIN_REQUEST_RATE:
        raise ValueError(f"load.request_rate: {p.load.request_rate:g} req/s is below {MIN_REQUEST_RATE:g} req/s")
    if p.load.batches > MAX_BATCHES or p.load.warmup_batches > MAX_BATCHES:
        raise ValueError(f"load.batches: at most {MAX_BATCHES:,} (and as many warm-up batches)")
    gpus = _axis_max(p, "tensor_parallel") * _axis_max(p, "pipeline_parallel")
    if gpus > MAX_GPUS:
        raise ValueError(f"sweep.tensor_parallel: TP x PP = {gpus} GPUs; at most {MAX_GPUS}")
    if p.gpu.indices and max(p.gpu.indices) >= MAX_GPUS:
        raise ValueError(f"gpu.indices: GPU {max(p.gpu.indices)} is beyond the {MAX_GPUS} GPUs one host can have")
    if p.gpu.indices is not None and len(set(p.gpu.indices)) != len(p.gpu.indices):
        raise ValueError("gpu.indices: an index is listed twice")
    if p.target.metric is not None and p.target.metric not in metrics_for_task(p.task):
        raise ValueError(f"target.metric: a {p.task} task has no {p.target.metric} data "
                         f"(one of {', '.join(metrics_for_task(p.task))})")
    if p.target.metric == "itl" and p.server.stream_interval > 1:
        raise ValueError(f"target.metric: itl is read between streamed chunks, and with server.stream_interval = "
                         f"{p.server.stream_interval} a chunk carries up to {p.server.stream_interval} tokens; "
                         "use tpot (exact per token) or stream_interval = 1")
    if isinstance(p.target.value, (int, float)) and not isinstance(p.target.value, bool):
        v = p.target.value
        raise ValueError(f"target.value: {v!r} is ambiguous: give a unit, e.g. \"{v:g}ms\" or \"{v:g}s\"")


def check_power_limits(profile: "Profile", gpus: "list[GpuInfo]", source: str = "") -> list[InputError]:
    """Every power limit of the sweep outside the range of a GPU it would run on (as the setup
    form can show while typing): InputError(source, "sweep.power_limit_w", ...) per limit and
    GPU; an index in ``gpu.indices`` that ``gpus`` does not have is an error on ``gpu.indices``.
    GPUs whose range is unknown are not checked."""
    by_index = {g.index: g for g in gpus}
    pool = list(profile.gpu.indices) if profile.gpu.indices else sorted(by_index)
    errors: list[InputError] = []
    for i in pool:
        if i not in by_index:
            errors.append(InputError(source, "gpu.indices", f"GPU {i} not found (visible: {sorted(by_index)})"))
    try:
        limits = profile.sweep.axis("power_limit_w")
        width = max(_axis_max(profile, "tensor_parallel") * _axis_max(profile, "pipeline_parallel"), 1)
    except ValueError:
        return errors
    used = [i for i in pool[:width] if i in by_index]
    for w in limits:
        for i in used:
            g = by_index[i]
            lo, hi = g.min_power_limit_w, g.max_power_limit_w
            if lo is None or hi is None:
                continue
            if not (lo - 1.0 <= w <= hi + 1.0):
                errors.append(InputError(source, "sweep.power_limit_w",
                                         f"{w:g} W is outside GPU {i}'s ({g.name}) power-limit range {lo:g}-{hi:g} W"))
    return errors


def _normal(p: "Profile") -> Any:
    data = msgspec.to_builtins(p)
    sweep = data.get("sweep", {})
    for name in list(sweep):
        if name in ("resolution", "image_size"):
            res = p.sweep.resolutions() if name == "resolution" else p.sweep.image_sizes()
            sweep[name] = sorted(r.lower().replace("×", "x").replace(" ", "") for r in res) or None
        elif name == "strategy":  # not an axis (grid or adaptive)
            continue
        elif sweep[name] is not None:
            sweep[name] = [float(v) for v in parse_axis(sweep[name])]
    data.pop("cluster", None)  # where the sweep runs, not what it measures
    if data.get("gpu", {}).get("indices") == []:
        data["gpu"]["indices"] = None
    return data


def profiles_equal(a: "Profile", b: "Profile") -> bool:
    """True when two decoded profiles describe the same sweep: compared by value, with sweep
    axes compared as the values they expand to (``tensor_parallel = "1"`` equals ``1``,
    ``power_limit_w = "400, 700"`` equals ``[400, 700]``). Used to accept a resume."""
    return _normal(a) == _normal(b)


def profile_differences(before: "Profile", now: "Profile", most: int = 3) -> list[str]:
    """Where two profiles differ as :func:`profiles_equal` compares them: ``field: old → new``
    for the first ``most`` fields (dotted paths), so a refused resume says what changed."""
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
        elif a != b:
            out.append(f"{path}: {_shown(a)} → {_shown(b)}")

    walk(_normal(before), _normal(now), "")
    return out[:most] + ([f"{len(out) - most} more"] if len(out) > most else [])


def _shown(v: Any) -> str:
    text = "none" if v is None else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."
