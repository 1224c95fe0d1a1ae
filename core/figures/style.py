"""What every figure shares: matplotlib loaded lazily and headless (Agg, no pyplot), the title
lines naming hardware, model and power source (``SIMULATED`` on simulated runs), and the file
metadata carrying the command that reproduces the figure.

Figures are :class:`matplotlib.figure.Figure` objects made without pyplot: no global state,
so they can be drawn from a worker thread of the app. Artists carry a ``gid`` (kept as the
element id in SVG) so tests and readers can find what was drawn.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..errors import InputError
from ..records import Manifest, Record

F = TypeVar("F", bound=Callable[..., Any])
FORMATS = ("png", "svg")
DPI = 100
#: Colours by series (colour-blind safe, Okabe–Ito).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
SIMULATED_WORD = "SIMULATED"
INSTALL_HINT = "matplotlib is not installed (pip install 'mle-tui[plots]')"

_RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "figure.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "mle-tui",  # stable ids in SVG output
    "svg.fonttype": "none",     # text stays text in SVG (searchable)
}


class FigureContext(msgspec.Struct, kw_only=True):
    """Who and what a figure is about, written on it and into its metadata."""

    run_id: str
    hardware: str
    model: str
    runtime: str
    power_source: str
    simulated: bool
    #: The command line that writes this figure again.
    command: str = ""

    def subtitle(self, width: int = 100) -> str:
        """Hardware · model (runtime) · power source, wrapped at `` · `` to ``width`` characters."""
        src = f"{SIMULATED_WORD}: {self.power_source}" if self.simulated else self.power_source
        lines: list[str] = []
        for part in (self.hardware, f"{self.model} ({self.runtime})", f"power: {src}"):
            if lines and len(lines[-1]) + 3 + len(part) <= width:
                lines[-1] += " · " + part
            else:
                lines.append(part)
        return "\n".join(lines)

    def short(self) -> str:
        """One line for a comparison: run, hardware, model, runtime, power source kind."""
        src = SIMULATED_WORD if self.simulated else "NVML"
        return f"{self.run_id}: {self.hardware} · {self.model} ({self.runtime}) · power: {src}"


def require_matplotlib() -> Any:
    """The ``matplotlib`` module; InputError (one line, exit 2 in the CLI) when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("command line", "--plot", INSTALL_HINT) from None
    return matplotlib


def context_for(records: list[Record], manifest: Manifest | None, command: str = "") -> FigureContext:
    """Hardware from the manifest (else the records), model and runtime from the records."""
    first = records[0] if records else None
    if manifest is not None and manifest.gpus:
        names = sorted({g.name for g in manifest.gpus})
        hardware = f"{len(manifest.gpus)}× " + " / ".join(names)
    elif first is not None:
        n = max(len(r.hardware.gpu_indices) for r in records)
        hardware = f"{n}× " + " / ".join(sorted({name for r in records for name in r.hardware.gpu_names}))
    else:
        hardware = "unknown GPU"
    simulated = bool(
        (manifest is not None and manifest.power_source == "simulated")
        or any(r.simulated or r.hardware.power_source == "simulated" for r in records))
    if simulated:
        power = "simulated GPU (a test double, not a measurement)"
    else:
        power = "NVML energy counter (Zeus), NVML power samples"
    model = first.model if first else "?"
    if first is not None and first.weights == "dummy":
        model += ", dummy weights"
    run_id = manifest.run_id if manifest is not None else (first.run_id if first else "?")
    return FigureContext(run_id=run_id, hardware=hardware, model=model,
                         runtime=first.runtime if first else "?", power_source=power,
                         simulated=simulated, command=command)


def new_figure(width_in: float, height_in: float, rows: int = 1, **kw: Any):
    """A pyplot-free Figure with constrained layout and ``rows`` stacked axes."""
    require_matplotlib()
    from matplotlib.figure import Figure

    with rc():
        fig = Figure(figsize=(width_in, height_in), layout="constrained")
        axes = fig.subplots(rows, 1, squeeze=False, **kw)[:, 0]
    return fig, list(axes)


def rc():
    """The shared rcParams as a context (creation and saving both run inside it)."""
    import matplotlib

    return matplotlib.rc_context(_RC)


def styled(build: F) -> F:
    """Run a figure builder inside :func:`rc` (rcParams apply when artists are made)."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kw: Any) -> Any:
        require_matplotlib()
        with rc():
            return build(*args, **kw)

    return wrapper  # type: ignore[return-value]


def stamp(fig, axes: Iterable, ctx: FigureContext, title: str, subtitle: str | None = None) -> None:
    """Title, the hardware/model/power-source lines, and a SIMULATED watermark on every axes
    of a simulated run."""
    fig.suptitle(f"{title}\n{subtitle or ctx.subtitle()}", gid="title")
    if ctx.simulated:
        for ax in axes:
            ax.text(0.5, 0.5, SIMULATED_WORD, transform=ax.transAxes, ha="center", va="center",
                    fontsize=34, color="#CC0000", alpha=0.12, rotation=20, zorder=0, gid="simulated")


def save(fig, path: Path, fmt: str, ctx: FigureContext, title: str, dpi: int = DPI,
         subtitle: str | None = None) -> Path:
    """Write ``fig`` as ``fmt`` with metadata: title, what it shows and the reproducing command
    (PNG text chunks ``Title``, ``Description``, ``Command``; SVG ``Title``, ``Description``)."""
    if fmt not in FORMATS:
        raise InputError("command line", "--format", f"unknown figure format {fmt!r} (png or svg)")
    import matplotlib

    desc = f"{title}. {subtitle or ctx.subtitle(10**6)}. Run {ctx.run_id}."
    if ctx.command:
        desc += f" Reproduce: {ctx.command}"
    meta: dict[str, Any] = {"Title": title, "Description": desc}
    if fmt == "png":
        meta["Command"] = ctx.command
        meta["Software"] = f"mle-tui (matplotlib {matplotlib.__version__})"
    else:
        meta["Date"] = None  # reproducible SVG
        meta["Creator"] = f"mle-tui (matplotlib {matplotlib.__version__})"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rc():
        fig.savefig(path, format=fmt, dpi=dpi, metadata=meta)
    return path


def finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def latency_scale(metric: str) -> tuple[float, str]:
    """Factor from seconds and the unit the latency axis is drawn in."""
    return (1e3, "ms") if metric in ("tpot", "ttft", "itl") else (1.0, "s")


def energy_label(records: list[Record]) -> str:
    if records and all(r.task == "text-to-image" for r in records):
        return "Energy per image (J)"
    if records and all(r.task in ("text-to-video", "image-to-video") for r in records):
        return "Energy per video (J)"
    return "Energy per request (J)"
