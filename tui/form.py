"""The setup form's model: a base profile plus the fields the user edits, validated as they
type (no Textual here). Every check is the core's own (``parse_axis``, ``parse_duration_s``,
the Profile's validation); this module only maps its messages onto the form's fields."""

from __future__ import annotations

import math
import typing
from pathlib import Path

import msgspec

from ..core.profile import DatasetSpec, Profile, _field_path, parse_duration_s
from ..core.records import GpuInfo
from ..core.sweep import SweepSyntaxError, parse_axis

#: Editable fields: form id -> (profile path, label).
FIELDS: dict[str, tuple[str, str]] = {
    "model": ("model.id", "Model"),
    "runtime": ("runtime", "Runtime"),
    "dataset": ("dataset.name", "Dataset"),
    "num_requests": ("dataset.num_requests", "Requests"),
    "max_num_seqs": ("sweep.max_num_seqs", "max_num_seqs"),
    "batch_size": ("sweep.batch_size", "Batch size"),
    "num_inference_steps": ("sweep.num_inference_steps", "Steps"),
    "resolution": ("sweep.resolution", "Resolution"),
    "num_frames": ("sweep.num_frames", "Frames"),
    "image_size": ("sweep.image_size", "Image size"),
    "tensor_parallel": ("sweep.tensor_parallel", "Tensor parallel"),
    "power_limit_w": ("sweep.power_limit_w", "Power limit W"),
    "gpu_indices": ("gpu.indices", "GPUs"),
    "target": ("target.value", "Latency target"),
}
AXES = ("max_num_seqs", "batch_size", "num_inference_steps", "num_frames", "tensor_parallel", "power_limit_w")
LLM_FIELDS = ("max_num_seqs",)
DIFFUSION_FIELDS = ("batch_size", "num_inference_steps", "resolution")
#: Fields shown only for some tasks (the others are always shown).
TASK_FIELDS = (*LLM_FIELDS, *DIFFUSION_FIELDS, "num_frames", "image_size")


def task_fields(profile: Profile) -> tuple[str, ...]:
    """The task-specific fields the form shows for ``profile``'s task."""
    if profile.is_llm:
        return (*LLM_FIELDS, *(("image_size",) if profile.task == "visual-chat" else ()))
    return (*DIFFUSION_FIELDS, *(("num_frames",) if profile.task in ("text-to-video", "image-to-video") else ()))
RUNTIMES = ("vllm", "transformers", "diffusers", "sim")
#: Every dataset a profile may name (read from the profile schema, so the two never differ).
DATASETS: tuple[str, ...] = typing.get_args(typing.get_type_hints(DatasetSpec)["name"])


def axis_text(value: object) -> str:
    """A profile's axis value as the user would type it."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def check_axis(text: str, *, optional: bool = True) -> str | None:
    """Problem with one typed sweep axis, or None."""
    if not text.strip():
        return None if optional else "required"
    try:
        values = parse_axis(text)
    except SweepSyntaxError as exc:
        return str(exc)
    if any(v <= 0 or not float(v).is_integer() for v in values):
        return "values must be positive integers"
    return None


def check_target(text: str) -> str | None:
    if not text.strip():
        return None
    try:
        parse_duration_s(text)
    except ValueError as exc:
        return str(exc)
    return None


def check_int(text: str, lo: int = 1, hi: int = 1_000_000) -> str | None:
    try:
        v = int(text.strip())
    except ValueError:
        return "a whole number"
    if not lo <= v <= hi:
        return f"between {lo} and {hi}"
    return None


def field_values(profile: Profile) -> dict[str, str]:
    s = profile.sweep
    return {
        "model": profile.model.id,
        "runtime": profile.runtime,
        "dataset": profile.dataset.name,
        "num_requests": str(profile.dataset.num_requests),
        "max_num_seqs": axis_text(s.max_num_seqs),
        "batch_size": axis_text(s.batch_size),
        "num_inference_steps": axis_text(s.num_inference_steps),
        "resolution": axis_text(s.resolution),
        "num_frames": axis_text(s.num_frames),
        "image_size": axis_text(s.image_size),
        "tensor_parallel": axis_text(s.tensor_parallel),
        "power_limit_w": axis_text(s.power_limit_w),
        "gpu_indices": ",".join(str(i) for i in profile.gpu.indices or []),
        "target": "" if profile.target.value is None else str(profile.target.value),
    }


class FormResult(msgspec.Struct, kw_only=True):
    profile: Profile | None
    #: form field id (or "profile") -> problem
    errors: dict[str, str]
    num_configs: int = 0

    @property
    def ok(self) -> bool:
        return self.profile is not None and not self.errors


def _set(d: dict, path: str, value: object) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    if value is None:
        d.pop(parts[-1], None)
    else:
        d[parts[-1]] = value


def build_profile(base: Profile, values: dict[str, str], *, simulated: bool = False,
                  gpus: list[GpuInfo] | None = None, source: str = "<form>") -> FormResult:
    """Apply the typed ``values`` to ``base`` and validate the result."""
    errors: dict[str, str] = {}
    d = msgspec.to_builtins(base)
    for fid, text in values.items():
        path = FIELDS[fid][0]
        text = text.strip()
        if fid in AXES:
            problem = check_axis(text)
            if problem:
                errors[fid] = problem
                continue
            if fid == "tensor_parallel" and not text:
                text = "1"
            _set(d, path, text or None)
        elif fid in ("resolution", "image_size"):
            parts = [p.strip() for p in text.split(",") if p.strip()]
            _set(d, path, (parts[0] if len(parts) == 1 else parts) if parts else None)
        elif fid == "num_requests":
            problem = check_int(text)
            if problem:
                errors[fid] = problem
                continue
            _set(d, path, int(text))
        elif fid == "target":
            problem = check_target(text)
            if problem:
                errors[fid] = problem
                continue
            _set(d, path, text or None)
        elif fid == "gpu_indices":
            indices, problem = parse_indices(text)
            if problem:
                errors[fid] = problem
                continue
            _set(d, path, indices or None)
        elif fid == "model":
            if not text:
                errors[fid] = "required"
                continue
            _set(d, path, text)
        else:
            _set(d, path, text)
    if simulated:
        d.setdefault("gpu", {})
        d["gpu"]["simulated"] = True
        d["gpu"]["allow_simulated"] = True
    if errors:
        return FormResult(profile=None, errors=errors)
    try:
        profile = msgspec.convert(d, Profile)
    except msgspec.ValidationError as exc:
        path, problem = _field_path(str(exc))
        fid = next((k for k, (p, _) in FIELDS.items() if path == p or path.startswith(p + ".")), "profile")
        if fid == "profile":
            problem = f"{path}: {problem}"
        return FormResult(profile=None, errors={fid: problem})
    configs = profile.configs()
    if gpus and not (simulated or profile.gpu.simulated or profile.runtime == "sim"):
        errors.update(check_against_gpus(profile, gpus))
    return FormResult(profile=profile, errors=errors, num_configs=len(configs))


def parse_indices(text: str) -> tuple[list[int], str | None]:
    """``"0,1"`` / ``"0 1"`` -> [0, 1]; empty -> [] (every GPU)."""
    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        out = [int(p) for p in parts]
    except ValueError:
        return [], "GPU indices separated by commas, e.g. 0,1 (empty = every GPU)"
    if any(i < 0 for i in out):
        return [], "GPU indices are >= 0"
    if len(set(out)) != len(out):
        return [], "an index is listed twice"
    return out, None


def check_against_gpus(profile: Profile, gpus: list[GpuInfo]) -> dict[str, str]:
    """Power limits within the GPUs' range; parallel degree within the GPU count; the chosen
    GPUs present."""
    errors: dict[str, str] = {}
    present = {g.index for g in gpus}
    missing = [i for i in profile.gpu.indices or [] if i not in present]
    if missing:
        errors["gpu_indices"] = f"GPU {missing[0]} not found (detected: {', '.join(map(str, sorted(present)))})"
    pool = [g for g in gpus if not profile.gpu.indices or g.index in profile.gpu.indices]
    lo = max((g.min_power_limit_w for g in pool or gpus if g.min_power_limit_w), default=None)
    hi = min((g.max_power_limit_w for g in pool or gpus if g.max_power_limit_w), default=None)
    limits = profile.sweep.axis("power_limit_w")
    if lo is not None and hi is not None:
        bad = [v for v in limits if not lo - 1e-6 <= v <= hi + 1e-6]
        if bad:
            errors["power_limit_w"] = f"{bad[0]} W is outside the GPUs' range {lo:.0f}–{hi:.0f} W"
    need = max((c.num_gpus for c in profile.configs()), default=1)
    if need > len(pool) and not missing:
        errors["tensor_parallel"] = (f"needs {need} GPUs, {len(pool)} "
                                     f"{'chosen' if profile.gpu.indices else 'detected'}")
    return errors


# -- duration estimate ---------------------------------------------------------------------
#: Start-up seconds per configuration (vLLM measured 40-90 s on H100/H200; DESIGN §5).
STARTUP_S = {"vllm": 75.0, "transformers": 30.0, "diffusers": 20.0, "sim": 0.0}
#: Rough decode step (s) of a serving engine, and seconds per denoising step per image.
DECODE_STEP_S = 0.03
DENOISE_STEP_PER_IMAGE_S = 0.03


def estimate_s(profile: Profile) -> tuple[float | None, str]:
    """A rough duration of the whole sweep and how it was obtained (shown as such)."""
    total = 0.0
    ds = profile.dataset
    n = ds.num_requests * ds.repeats
    mean_out = min(ds.max_output_tokens, max(ds.min_output_tokens, 256))
    for c in profile.configs():
        t = STARTUP_S.get(profile.runtime, 30.0)
        if profile.is_llm:
            t += math.ceil(n / max(1, c.batch)) * mean_out * DECODE_STEP_S
        else:
            px = (c.width or 512) * (c.height or 512) / (512 * 512)
            steps = c.num_inference_steps or 25
            batches = profile.load.batches + profile.load.warmup_batches
            t += batches * c.batch * steps * DENOISE_STEP_PER_IMAGE_S * px
        total += t
    if profile.runtime == "sim":
        if not profile.sim.realtime:
            return None, "virtual clock: seconds"
        return total / profile.sim.time_scale, "simulated, scaled"
    return total, "rough: start-up + requests/B × output tokens × 30 ms"


def shipped_profiles(extra_dirs: list[Path] | None = None) -> list[Path]:
    """``*.toml`` under the repository's ``profiles/`` (and ``./profiles``), by name."""
    from ..core.shipped import profiles_dir

    dirs = [profiles_dir(), Path.cwd() / "profiles", *(extra_dirs or [])]
    seen: dict[str, Path] = {}
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                seen.setdefault(p.name, p)
    return sorted(seen.values(), key=lambda p: (p.name != "demo.toml", p.name))


def load(path: str | Path) -> Profile:
    from ..core.profile import load_profile

    return load_profile(path)

