"""Figures (core/figures): what is drawn, read back through matplotlib's artist tree, for the
demo run (simulated), the shipped H100 runs and hand-built records; files and their metadata;
``report --plot`` and ``compare --plot``; the app's ``f`` action."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("CI") == "true":
    import matplotlib  # noqa: F401  (in the test extra: CI fails rather than skips without it)
else:
    pytest.importorskip("matplotlib")

from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from mle_tui.core.errors import InputError  # noqa: E402
from mle_tui.core.figures import render_compare, render_run, report_command  # noqa: E402
from mle_tui.core.figures.compare import compare_figure  # noqa: E402
from mle_tui.core.figures.energy_batch import energy_batch_figure, series_of  # noqa: E402
from mle_tui.core.figures.pareto_fig import REASON_WIDTH, pareto_figure  # noqa: E402
from mle_tui.core.figures.style import context_for  # noqa: E402
from mle_tui.core.figures.timeline import timeline_figure  # noqa: E402
from mle_tui.core.pareto import recommend  # noqa: E402
from mle_tui.core.store import RunStore  # noqa: E402
from record_factory import sample_records, write_run_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VLLM = REPO / "records" / "h200-vllm-llama3.1-8b-dummy"
DIFFUSION = REPO / "records" / "h100-diffusers-sd2.1-dummy"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300, env=env)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """The shipped demo profile run headless (simulated GPU, seconds)."""
    out = tmp_path_factory.mktemp("demo") / "run"
    proc = cli("run", "profiles/demo.toml", "--headless", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out


def load(run_dir: Path):
    store = RunStore(run_dir)
    return store.load_records(), store.read_manifest()


def by_gid(fig, gid: str) -> list:
    return fig.findobj(lambda a: a.get_gid() == gid)


def one(fig, gid: str):
    found = by_gid(fig, gid)
    assert len(found) == 1, f"{gid}: {len(found)} artists"
    return found[0]


def points(collection) -> set[tuple[float, float]]:
    return {(round(float(x), 9), round(float(y), 9)) for x, y in collection.get_offsets()}


def pt(r, metric="tpot") -> tuple[float, float]:
    lat = r.latency_value_s if metric == r.latency_metric else getattr(r.latency, metric).mean_s
    scale = 1e3 if metric in ("tpot", "ttft", "itl") else 1.0
    return (round(lat * scale, 9), round(r.energy_per_request_j, 9))


def span_x(patch) -> tuple[float, float]:
    assert isinstance(patch, Rectangle)
    return patch.get_x(), patch.get_x() + patch.get_width()


def title(fig) -> str:
    return fig._suptitle.get_text()


# -- Pareto front ------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["demo", "vllm", "diffusion", "factory"])
def test_pareto_front_draws_the_core_frontier_and_recommendation(which, demo_dir, tmp_path):
    run_dir = {"demo": demo_dir, "vllm": VLLM, "diffusion": DIFFUSION,
               "factory": write_run_dir(tmp_path / "f", sample_records())}[which]
    records, manifest = load(run_dir)
    target_s = 5.0 if which == "diffusion" else 0.1
    metric = records[0].latency_metric
    fig = pareto_figure(records, context_for(records, manifest, "cmd"), target_s=target_s)
    rec = recommend(records, target_s)
    by_key = {r.config_key: r for r in records}
    ok = [r for r in records if r.status == "ok" and r.energy_per_request_j is not None]
    assert points(one(fig, "configs-ok")) == {pt(r, metric) for r in ok}
    # The frontier line joins exactly the core's frontier, and no drawn point dominates one of them.
    line = one(fig, "frontier")
    drawn = {(round(x, 9), round(y, 9)) for x, y in zip(line.get_xdata(), line.get_ydata())}
    assert drawn == {pt(by_key[k], metric) for k in rec.frontier}
    for fx, fy in drawn:
        assert not any((x <= fx and y < fy) or (x < fx and y <= fy) for x, y in points(one(fig, "configs-ok")))
    assert list(line.get_xdata()) == sorted(line.get_xdata())
    assert points(one(fig, "recommended")) == {pt(by_key[rec.recommended], metric)}
    assert points(one(fig, "fastest")) == {pt(by_key[rec.fastest], metric)}
    scale = 1e3 if metric == "tpot" else 1.0
    assert one(fig, "target").get_xdata()[0] == pytest.approx(target_s * scale)
    if rec.recommended != rec.fastest:
        assert f"{rec.savings_vs_fastest:.1%}" in one(fig, "savings").get_text()
    # Not-ok configurations: hollow markers where they have a point, each reason in the note.
    bad = [r for r in records if r.status != "ok"]
    drawable = [r for r in bad if r.latency_value_s is not None and r.energy_per_request_j is not None]
    if drawable:
        hollow = one(fig, "configs-not-ok")
        assert points(hollow) == {pt(r, metric) for r in drawable}
        assert len(hollow.get_facecolors()) == 0 and len(hollow.get_edgecolors()) > 0
    if bad:
        texts = [t.get_text() for t in one(fig, "reasons").get_texts()]
        assert all(len(line) <= REASON_WIDTH for t in texts for line in t.split("\n"))  # wrapped, not cut off
        flat = " | ".join(" ".join(t.split()) for t in texts)
        for r in bad:
            assert r.config.label() in flat and " ".join(r.reasons[0].split()) in flat
    else:
        assert not by_gid(fig, "reasons")
    head = title(fig)
    if which == "demo":
        assert "SIMULATED" in head and by_gid(fig, "simulated") and "Simulated H100 SXM" in head
    elif which in ("vllm", "diffusion"):
        assert "SIMULATED" not in head and not by_gid(fig, "simulated")
        gpu = "NVIDIA H200" if which == "vllm" else "NVIDIA H100 80GB HBM3"
        assert gpu in head and "NVML" in head
    ax = fig.axes[0]
    assert ("(ms)" if metric == "tpot" else "(s)") in ax.get_xlabel() and "(J)" in ax.get_ylabel()


def test_pareto_shows_the_invalid_vllm_configurations_hollow(tmp_path):
    # The shipped H200 run has one invalid configuration (B = 256 at 700 W: the client's tokens
    # came 5.6 s after the GPU went idle); reanalysed from its traces with a 30 s window gate,
    # the four configurations whose windows are shorter join it.
    from mle_tui.core.reanalyse import reanalyse

    assert sorted(r.config_key for r in load(VLLM)[0] if r.status == "invalid") == ["mns256-tp1-pl700"]
    reanalyse(VLLM, tmp_path / "gate30", min_window_s=30.0)
    records, manifest = load(tmp_path / "gate30")
    fig = pareto_figure(records, context_for(records, manifest), target_s=0.1)
    invalid = sorted(r.config_key for r in records if r.status == "invalid")
    assert invalid == ["mns256-tp1-pl700", "mns32-tp1-pl400", "mns32-tp1-pl700", "mns64-tp1-pl400",
                       "mns64-tp1-pl700"]
    assert len(one(fig, "configs-not-ok").get_offsets()) == 5
    assert "steady window 21.0 s < 30 s" in " ".join(t.get_text() for t in one(fig, "reasons").get_texts())


def test_a_target_far_right_of_every_point_is_noted_not_drawn_to_scale(demo_dir):
    records, manifest = load(demo_dir)
    fig = pareto_figure(records, context_for(records, manifest), target_s=10.0)
    ax = fig.axes[0]
    assert ax.get_xlim()[1] < 10_000.0
    assert "right of every point" in one(fig, "target-note").get_text()
    close = pareto_figure(records, context_for(records, manifest), target_s=0.03)
    assert close.axes[0].get_xlim()[1] >= 30.0 and not by_gid(close, "target-note")


# -- energy per request vs batch size ----------------------------------------------------------
def test_energy_vs_batch_bars_are_the_records_with_the_tdp_estimate_behind():
    records, manifest = load(VLLM)
    fig = energy_batch_figure(records, context_for(records, manifest))
    series = series_of(records)
    assert [s.label for s in series] == ["400 W", "700 W"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["32", "64", "128", "256"]
    for i, s in enumerate(series):
        bars = by_gid(fig, f"measured-{i}")
        assert [b.get_height() for b in bars] == pytest.approx([r.energy_per_request_j for r in s.records])
        tdp = by_gid(fig, f"tdp-{i}")
        assert [b.get_height() for b in tdp] == pytest.approx(
            [r.energy_per_request_j * r.tdp_overestimation for r in s.records])
        for b, t in zip(bars, tdp):  # behind and wider, centred on the same x
            assert t.get_zorder() < b.get_zorder() and t.get_width() > b.get_width()
            assert t.get_x() + t.get_width() / 2 == pytest.approx(b.get_x() + b.get_width() / 2)
        for b, r in zip(bars, s.records):  # invalid configurations are hollow
            assert (b.get_facecolor()[3] == 0) == (r.status != "ok")
        line = one(fig, f"line-{i}")
        assert list(line.get_ydata()) == pytest.approx([r.energy_per_request_j for r in s.records])
    ratios = sorted(t.get_text() for t in by_gid(fig, "ratio"))
    assert ratios == sorted(f"{r.tdp_overestimation:.2f}×" for r in records)
    assert "NVIDIA H200" in title(fig)


def test_energy_vs_batch_diffusion_has_one_series_per_steps_and_limit(demo_dir):
    records, manifest = load(DIFFUSION)
    fig = energy_batch_figure(records, context_for(records, manifest))
    labels = [s.label for s in series_of(records)]
    assert labels == ["steps=10 768x768 400 W", "steps=10 768x768 700 W",
                      "steps=25 768x768 400 W", "steps=25 768x768 700 W"]
    assert fig.axes[0].get_xlabel().startswith("Batch size") and "image" in fig.axes[0].get_ylabel()
    demo, m = load(demo_dir)
    assert "SIMULATED" in title(energy_batch_figure(demo, context_for(demo, m)))


def test_energy_vs_batch_leaves_failed_out_and_none_without_energy(tmp_path):
    recs = sample_records()
    assert "mns128-tp1-pl400" not in {r.config_key for s in series_of(recs) for r in s.records}
    assert energy_batch_figure([r for r in recs if r.status == "failed"], context_for(recs, None)) is None


# -- timelines ---------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["demo", "vllm", "diffusion"])
def test_timeline_shades_the_steady_window_on_both_axes(which, demo_dir):
    run_dir = {"demo": demo_dir, "vllm": VLLM, "diffusion": DIFFUSION}[which]
    records, manifest = load(run_dir)
    rec = records[1]
    fig = timeline_figure(rec, context_for(records, manifest))
    ax_p, ax_b = fig.axes[0], fig.axes[1]
    assert ax_b.get_shared_x_axes().joined(ax_p, ax_b)
    spans = by_gid(fig, "steady")
    assert len(spans) == 2 and {s.axes for s in spans} == {ax_p, ax_b}
    for s in spans:
        assert span_x(s) == (rec.steady_state.start_s, rec.steady_state.end_s)
    total = one(fig, "total")
    assert list(total.get_xdata()) == rec.power_timeline.t_s and list(total.get_ydata()) == rec.power_timeline.total_w
    assert list(one(fig, "memory").get_ydata()) == rec.power_timeline.memory_w
    assert one(fig, "power-limit").get_ydata()[0] == sum(rec.hardware.power_limit_w)
    assert list(one(fig, "running").get_ydata()) == rec.batch_timeline.running
    assert one(fig, "max-batch").get_ydata()[0] == rec.config.batch
    assert ax_p.get_ylabel() == "Power (W)" and "(s)" in ax_b.get_xlabel()
    phases = [a for a in fig.findobj() if (a.get_gid() or "").startswith("phase-")]
    if which == "diffusion":
        assert len(phases) == len(rec.batches) == 4
        for p, b in zip(phases, sorted(rec.batches, key=lambda b: b.start_s)):
            assert span_x(p) == (b.start_s, b.end_s)
        texts = [t.get_text() for t in ax_p.texts]
        assert "warm-up" in texts and "batch 3" in texts
    else:
        assert phases == []
    assert ("SIMULATED" in title(fig)) == (which == "demo")


def test_timeline_per_gpu_lines_for_a_multi_gpu_record():
    rec = sample_records()[0]
    rec.power_timeline.t_s = [0.0, 1.0, 2.0]
    rec.power_timeline.per_gpu_w = {"0": [100.0, 200.0, 300.0], "1": [110.0, 210.0, 310.0]}
    rec.power_timeline.total_w = [210.0, 410.0, 610.0]
    fig = timeline_figure(rec, context_for([rec], None))
    assert list(one(fig, "gpu-1").get_ydata()) == [110.0, 210.0, 310.0]
    assert one(fig, "total").get_label().startswith("total")
    assert any("no batch timeline recorded" == t.get_text() for t in fig.axes[1].texts)


# -- comparison --------------------------------------------------------------------------------
def test_compare_puts_both_fronts_on_one_chart(demo_dir):
    a, ma = load(VLLM)
    b, mb = load(demo_dir)
    fig, shown, desc = compare_figure([(a, context_for(a, ma)), (b, context_for(b, mb))], target_s=0.1)
    assert len(fig.axes) == 1  # one chart
    for i, recs in enumerate((a, b)):
        rec = recommend(recs, 0.1)
        by_key = {r.config_key: r for r in recs}
        line = one(fig, f"run{i}-frontier")
        assert {(round(x, 9), round(y, 9)) for x, y in zip(line.get_xdata(), line.get_ydata())} == {
            pt(by_key[k]) for k in rec.frontier}
        assert points(one(fig, f"run{i}-recommended")) == {pt(by_key[rec.recommended])}
    # the H200 run's one invalid configuration is drawn hollow; the demo run is all ok
    assert len(one(fig, "run0-configs-not-ok").get_offsets()) == 1 and not by_gid(fig, "run1-configs-not-ok")
    head = title(fig)
    assert "NVIDIA H200" in head and "Simulated H100 SXM" in head and "SIMULATED" in head
    assert shown.simulated and "power: NVML" in desc and "power: SIMULATED" in desc


# -- files, metadata, lazy import --------------------------------------------------------------
def test_render_run_writes_every_figure_with_the_command_in_its_metadata(demo_dir, tmp_path):
    records, manifest = load(demo_dir)
    cmd = report_command([str(demo_dir)], str(tmp_path / "png"), "png", "100ms")
    written = render_run(records, manifest, tmp_path / "png", target_s=0.1, command=cmd)
    names = sorted(p.name for p in written)
    assert names == sorted(["pareto.png", "energy_vs_batch.png"] + [f"timeline-{r.config_key}.png" for r in records])
    for p in written:
        text = Image.open(p).text
        assert text["Command"] == cmd and "SIMULATED" in text["Description"]
    assert cmd.startswith("mle-tui report ") and "--target 100ms" in cmd
    rec = recommend(records, 0.1)
    few = render_run(records, manifest, tmp_path / "few", target_s=0.1, timelines="recommended")
    assert sorted(p.name for p in few) == sorted(["pareto.png", "energy_vs_batch.png",
                                                  f"timeline-{rec.recommended}.png", f"timeline-{rec.fastest}.png"])
    svg = render_run(records, manifest, tmp_path / "svg", fmt="svg", command="mle-tui report X", timelines="none")
    assert sorted(p.name for p in svg) == ["energy_vs_batch.svg", "pareto.svg"]
    body = (tmp_path / "svg" / "pareto.svg").read_text()
    assert "Reproduce: mle-tui report X" in body and "SIMULATED" in body and 'id="frontier' in body
    with pytest.raises(InputError, match="png or svg"):
        render_run(records, manifest, tmp_path / "x", fmt="pdf")


def test_an_empty_run_still_gets_a_labelled_pareto_figure(tmp_path):
    (tmp_path / "run" / "records").mkdir(parents=True)
    written = render_run([], None, tmp_path / "figs")
    assert [p.name for p in written] == ["pareto.png"]
    fig = pareto_figure([], context_for([], None))
    assert "no configuration" in one(fig, "empty").get_text() and fig.axes[0].get_legend() is None


def test_missing_matplotlib_is_one_line_of_advice(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InputError, match=r"mle-tui\[plots\]"):
        render_run(sample_records(), None, tmp_path)


def test_importing_core_and_figures_does_not_import_matplotlib():
    code = ("import sys, mle_tui.core, mle_tui.core.figures, mle_tui.core.report; "
            "sys.exit(1 if 'matplotlib' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_shipped_figures_are_small_and_say_how_they_were_made():
    figures = REPO / "records" / "figures"
    shipped = sorted(str(p.relative_to(figures)) for p in figures.rglob("*.png"))
    assert {"vllm/pareto.png", "vllm/energy_vs_batch.png", "vllm/timeline-mns256-tp1-pl400.png",
            "diffusion/pareto.png", "diffusion/energy_vs_batch.png"} <= set(shipped)
    readme = (REPO / "records" / "README.md").read_text()
    for name in shipped:
        p = figures / name
        assert p.stat().st_size < 150_000, p
        assert f"figures/{name}" in readme
        cmd = Image.open(p).text["Command"]
        assert cmd.startswith(("mle-tui report records/h100-", "mle-tui report records/h200-")) and cmd in readme


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_report_plot_and_compare(tmp_path, demo_dir):
    out = tmp_path / "figs"
    proc = cli("report", str(VLLM), "--plot", str(out), "--format", "svg", "--target", "100ms")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote 10 figures to {out}\n"
    assert (out / "pareto.svg").exists() and len(list(out.glob("timeline-*.svg"))) == 8
    assert f"Reproduce: mle-tui report {VLLM} --plot {out} --format svg --target 100ms" in (
        out / "pareto.svg").read_text()
    # --json keeps stdout for JSON.
    proc = cli("report", str(DIFFUSION), "--json", "--plot", str(tmp_path / "j"))
    assert proc.returncode == 0 and proc.stdout.lstrip().startswith("{") and "wrote 10 figures" in proc.stderr
    bad = cli("report", str(VLLM), "--format", "svg")
    assert bad.returncode == 2 and bad.stderr == "mle-tui: command line: --format: applies to --plot OUT_DIR\n"
    cmp_out = tmp_path / "cmp"
    proc = cli("compare", str(VLLM), str(demo_dir), "--plot", str(cmp_out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{VLLM}: recommended mns256-tp1-pl400")
    assert lines[1].startswith(f"{demo_dir}: SIMULATED: recommended")
    assert lines[2] == f"{demo_dir.name} vs {VLLM.name}: {demo_dir.name} is SIMULATED, {VLLM.name} measured"
    assert any(x.startswith("  different recommendation: ") for x in lines[3:-1])
    assert lines[-1] == f"wrote {cmp_out / 'compare.png'}"
    assert Image.open(cmp_out / "compare.png").text["Command"].startswith(f"mle-tui compare {VLLM} {demo_dir}")
    one_dir = cli("compare", str(VLLM))
    assert one_dir.returncode == 2 and "two or more run directories" in one_dir.stderr


# -- the app -----------------------------------------------------------------------------------
async def test_app_results_f_writes_the_figures_into_the_run_directory(tmp_path):
    from textual.widgets import Input

    from mle_tui.tui.app import MleApp
    from mle_tui.tui.modals import ExportScreen
    from mle_tui.tui.rundirs import load_run
    from mle_tui.tui.screen_records import CompareScreen
    from mle_tui.tui.screen_results import ResultsScreen
    from tui_fakes import FrozenClock, no_gpu_probe

    run = tmp_path / "vllm"
    shutil.copytree(VLLM, run)
    app = MleApp(run_dir=run, gpu_probe=no_gpu_probe, now_s=FrozenClock(), runs_root=tmp_path / "runs",
                 records_roots=[tmp_path], cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.pause()
        res = app.screen
        assert isinstance(res, ResultsScreen)
        assert "Export figures" in {c.title for c in app.get_system_commands(res)}
        await pilot.press("f")
        assert isinstance(app.screen, ExportScreen)
        assert app.screen.query_one(Input).value == str(run / "figures")
        await pilot.press("enter")
        await _until(pilot, lambda: app.last_figures is not None)
        assert sorted(p.name for p in app.last_figures) == sorted(
            ["pareto.png", "energy_vs_batch.png"] + [f"timeline-{k}.png" for k in (
                p.stem for p in (run / "records").iterdir())])
        assert all(p.parent == run / "figures" and p.exists() for p in app.last_figures)
        cmd = Image.open(run / "figures" / "pareto.png").text["Command"]
        assert cmd == f"mle-tui report {run} --plot {run / 'figures'} --format png --target 100ms --metric tpot"
        # The comparison screen: both fronts into a typed directory.
        app.last_figures = None
        app.push_screen(CompareScreen([load_run(run), load_run(DIFFUSION)]))
        await pilot.pause()
        await pilot.press("f")
        assert isinstance(app.screen, ExportScreen)
        app.screen.query_one(Input).value = str(tmp_path / "cmp")
        await pilot.press("enter")
        await _until(pilot, lambda: app.last_figures is not None)
        assert app.last_figures == [tmp_path / "cmp" / "compare.png"]


async def _until(pilot, cond, timeout_s: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {cond}"
        await pilot.pause(0.1)
