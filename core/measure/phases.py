"""Diffusion phases: Encode, Denoise (each step) and Decode of every batch, from the trace's marks.

A diffusion runtime marks, on the run clock, for batch ``i`` (labels from :func:`label`):
``phase:i:encode`` (the batch's start: text / image encoders run first), ``phase:i:denoise``
(the denoiser's first call), ``phase:i:step:k`` (the end of step ``k``, from the pipeline's step
callback), ``phase:i:decode`` (the VAE decoder's first call) and ``phase:i:end`` (the batch's
synchronised end). :func:`phase_spans` turns them into the record's
:class:`~mle_tui.core.records.PhaseSpan` list with each span's energy; :func:`apply_phases` is
what analysis calls (one line), which also labels video records with their unit (J/video).

Pure (no clock, threads or I/O), like the rest of the analysis; :func:`mark_hook` is the
callable the runner hands to ``RuntimeContext.on_mark`` (records the mark and emits a
:class:`~mle_tui.core.events.PhaseMark` for the live chart).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..profile import VIDEO_TASKS
from ..records import PhaseSpan, Record
from .energy import window_energy_j
from .trace import Mark, Trace

PREFIX = "phase:"
PHASES = ("encode", "denoise", "decode")
#: One letter per phase on the time axis of the charts.
LETTERS = {"encode": "E", "denoise": "D", "decode": "V"}


def label(batch: int, what: str, step: int | None = None) -> str:
    """``phase:3:encode``, ``phase:3:step:0``, ``phase:3:end``."""
    return f"{PREFIX}{batch}:{what}" if step is None else f"{PREFIX}{batch}:step:{step}"


def parse(text: str) -> tuple[int, str, int | None] | None:
    """(batch, what, step) of a phase label; None for other marks (start, end, ...)."""
    if not text.startswith(PREFIX):
        return None
    parts = text[len(PREFIX):].split(":")
    try:
        if len(parts) == 3 and parts[1] == "step":
            return int(parts[0]), "step", int(parts[2])
        if len(parts) == 2 and parts[1] in (*PHASES, "end"):
            return int(parts[0]), parts[1], None
    except ValueError:
        return None
    return None


def spans_from_marks(marks: list[Mark]) -> list[PhaseSpan]:
    """Spans of every batch that has all four edges (encode, denoise, decode, end), in order;
    energy not filled in. Batches whose edges are missing or out of order are left out."""
    by_batch: dict[int, dict[str, Any]] = {}
    for m in marks:
        p = parse(m.label)
        if p is None:
            continue
        b, what, step = p
        d = by_batch.setdefault(b, {"steps": {}})
        if what == "step":
            d["steps"][step] = m.t_s
        else:
            d.setdefault(what, m.t_s)
    out: list[PhaseSpan] = []
    for b in sorted(by_batch):
        d = by_batch[b]
        if not all(k in d for k in ("encode", "denoise", "decode", "end")):
            continue
        t = [d["encode"], d["denoise"], d["decode"], d["end"]]
        if any(t[i] > t[i + 1] for i in range(3)):
            continue
        steps = [d["steps"][k] for k in sorted(d["steps"])]
        steps = [s for s in steps if t[1] <= s <= t[2]]
        for i, name in enumerate(PHASES):
            out.append(PhaseSpan(batch=b, phase=name, start_s=t[i], end_s=t[i + 1],  # type: ignore[arg-type]
                                 step_ends_s=steps if name == "denoise" else []))
    return out


def live_spans(marks: list[tuple[float, str]]) -> list[tuple[float, float | None, str]]:
    """Phase spans so far from marks as they arrive, ``(start, end or None while open,
    phase)``: what the live chart draws before a batch has all its edges."""
    edges: dict[int, dict[str, float]] = {}
    for t, text in marks:
        p = parse(text)
        if p is not None and p[1] != "step":
            edges.setdefault(p[0], {}).setdefault(p[1], t)
    out: list[tuple[float, float | None, str]] = []
    order = (*PHASES, "end")
    for b in sorted(edges):
        e = edges[b]
        for i, name in enumerate(PHASES):
            if name not in e:
                continue
            end = next((e[k] for k in order[i + 1:] if k in e), None)
            out.append((e[name], end, name))
    return out


def phase_spans(trace: Trace) -> list[PhaseSpan]:
    """The trace's phase spans with their energy (where the trace has power) and warm-up flag
    (from the batch rows)."""
    spans = spans_from_marks(list(trace.marks))
    warm = {b.index for b in trace.batches if b.warmup}
    power = trace.power
    for s in spans:
        s.warmup = s.batch in warm
        if power is not None and power.t_s:
            e = window_energy_j(power, s.start_s, s.end_s).energy_j
            s.energy_j = e if math.isfinite(e) else None
    return spans


def apply_phases(rec: Record, trace: Trace) -> None:
    """Analysis' one call: the record's phases; for video tasks, figures per video (eq. 1 per
    video) in place of per image."""
    if trace.is_llm:
        return
    rec.phases = phase_spans(trace)
    if trace.task in VIDEO_TASKS:
        rec.energy_per_video_j, rec.energy_per_image_j = rec.energy_per_image_j, None
        rec.throughput.videos_per_s, rec.throughput.images_per_s = rec.throughput.images_per_s, None


def mark_hook(recorder: Any, emit: Callable[..., None]) -> Callable[[float, str], None]:
    """``RuntimeContext.on_mark`` for a configuration: the mark goes to the trace recorder and,
    as a :class:`~mle_tui.core.events.PhaseMark`, to the live view (phase edges also to
    live.jsonl for ``attach``; step ends, up to a few hundred a batch, only to the app)."""
    from ..events import PhaseMark

    def on_mark(t_s: float, text: str) -> None:
        recorder.mark(t_s, text)
        emit(PhaseMark(t_s=t_s, label=text), ":step:" not in text)

    return on_mark
