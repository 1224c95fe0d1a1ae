"""Shared plumbing of the in-process runtimes (transformers, diffusers).

In-process work runs in real time. :class:`RealTime` maps ``time.perf_counter()`` stamps (what
transformers records per token) onto the run clock and, when the run clock is virtual, advances
it to follow real time so the power sampler's timers fire in order. :class:`RunLog` writes the
runtime's own log lines to ``ctx.log_path`` and keeps the tail for the record.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..clock import Clock
from ..errors import InputError, RunFailure
from .base import RuntimeContext

#: Where the model shapes for ``weights = "dummy"`` live (config dicts, no weights).
MODELS_DIR = Path(__file__).resolve().parent.parent / "data" / "models"

#: Common Hugging Face ids mapped to the shipped shapes, for ``weights = "dummy"``.
SHAPE_ALIASES: dict[str, str] = {
    "meta-llama/llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/llama-3.1-8b-instruct": "llama-3.1-8b",
    "meta-llama/meta-llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/meta-llama-3.1-8b-instruct": "llama-3.1-8b",
    "stabilityai/stable-diffusion-2-1": "sd-2.1",
    "stabilityai/stable-diffusion-2-1-base": "sd-2.1",
    "stabilityai/stable-diffusion-xl-base-1.0": "sdxl",
}


class RealTime:
    """Real time on the run clock. ``to_run(perf_s)`` converts a ``perf_counter`` stamp."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._c0 = clock.now_s()
        self._p0 = time.perf_counter()

    def to_run(self, perf_s: float) -> float:
        return self._c0 + (perf_s - self._p0)

    def now_s(self) -> float:
        """The run-clock time now; a virtual clock is advanced to it first."""
        t = self.to_run(time.perf_counter())
        advance = getattr(self.clock, "advance_to", None)
        if getattr(self.clock, "virtual", False) and advance is not None:
            advance(t)
        return t

    def wait(self, dt_s: float, cancel: threading.Event | None = None) -> bool:
        """Sleep ``dt_s`` real seconds (returns False if ``cancel`` was set), then sync the clock."""
        stopped = False
        if cancel is not None:
            stopped = cancel.wait(max(0.0, dt_s))
        else:
            time.sleep(max(0.0, dt_s))
        self.now_s()
        return not stopped


class RunLog:
    """The runtime's log: appended to ``ctx.log_path``, forwarded to ``ctx.on_log``, tail kept."""

    def __init__(self, ctx: RuntimeContext, tail: int = 50) -> None:
        self._ctx = ctx
        self._tail: deque[str] = deque(maxlen=tail)
        self._first: list[str] = []
        try:
            ctx.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._fh: Any = open(ctx.log_path, "a", encoding="utf-8")
        except OSError:
            self._fh = None

    def pin(self, line: str) -> None:
        """A line that always heads the record's log tail (e.g. the dummy-weight scheme)."""
        self._first.append(line)
        self.line(line)

    def line(self, line: str) -> None:
        self._tail.append(line)
        if self._fh is not None:
            self._fh.write(line + "\n")
            self._fh.flush()
        self._ctx.on_log(line)

    def tail(self) -> list[str]:
        rest = [x for x in self._tail if x not in self._first]
        return [*self._first, *rest]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def load_shape(model_id: str, what: str) -> dict[str, Any]:
    """Config dict for a dummy model: a local directory with ``config.json`` (LLMs), a JSON file,
    a shipped shape name (``llama-3.1-8b``, ``sd-2.1``, ``sdxl``, ``tiny-llama``, ``tiny-sd``) or a
    Hugging Face id listed in :data:`SHAPE_ALIASES`. Unknown -> :class:`InputError`."""
    path = Path(model_id).expanduser()
    candidates = []
    if path.is_dir():
        candidates.append(path / "config.json")
    elif path.suffix == ".json" and path.is_file():
        candidates.append(path)
    name = SHAPE_ALIASES.get(model_id.lower(), model_id)
    candidates.append(MODELS_DIR / f"{name}.json")
    for c in candidates:
        if c.is_file():
            try:
                data = json.loads(c.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(str(c), "", f"cannot read model shape: {exc}") from None
            if not isinstance(data, dict):
                raise InputError(str(c), "", "model shape must be a JSON object")
            data.pop("_comment", None)
            return data
    shipped = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
    raise InputError(
        "profile", "model.id",
        f"no {what} shape for {model_id!r} with weights = \"dummy\": give a directory with "
        f"config.json, a JSON file, or one of {', '.join(shipped)}",
    )


def is_oom(exc: BaseException) -> bool:
    """True for accelerator out-of-memory errors (``torch.OutOfMemoryError`` and friends)."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is required by both runtimes
        pass
    return "out of memory" in str(exc).lower()


def as_run_failure(exc: BaseException, oom: str, failed: str, *, free_memory: bool = True) -> RunFailure:
    """``exc`` out of a runtime as its RunFailure: ``CUDA out of memory <oom>`` for an
    out-of-memory error (the accelerator's cached memory freed first when ``free_memory``),
    else ``<failed>: <type>: <message>``."""
    if is_oom(exc):
        if free_memory:
            free_accelerator_memory()
        return RunFailure(f"CUDA out of memory {oom}")
    return RunFailure(f"{failed}: {type(exc).__name__}: {exc}")


def free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def pick_device(ctx: RuntimeContext) -> str:
    """``cuda:N`` for the configuration's first GPU when CUDA is available, else ``cpu``."""
    import torch

    if torch.cuda.is_available():
        index = ctx.gpu_indices[0] if ctx.gpu_indices else 0
        return f"cuda:{index}" if index < torch.cuda.device_count() else "cuda:0"
    return "cpu"


def pick_dtype(name: str, device: str) -> Any:
    """float32 on CPU; the profile's dtype on GPUs (``auto`` = bfloat16)."""
    import torch

    if device == "cpu":
        return torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}.get(
        name, torch.bfloat16
    )


def one_gpu_setup(ctx: RuntimeContext, runtime: str) -> tuple[RunLog, str, Any]:
    """How every in-process runtime starts a configuration: one GPU only (a RunFailure naming
    ``runtime`` otherwise), then its run log, device and dtype."""
    if ctx.config.num_gpus > 1:
        raise RunFailure(f"the {runtime} runtime runs on one GPU: tensor_parallel and pipeline_parallel must be 1")
    device = pick_device(ctx)
    return RunLog(ctx), device, pick_dtype(ctx.profile.model.dtype, device)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def drive_sim(ctx: RuntimeContext, utilisation: float) -> None:
    """Set the simulated GPUs' load (no-op on real GPUs)."""
    for gpu in ctx.sim_gpus or []:
        gpu.set_load(max(0.0, min(1.0, utilisation)))
