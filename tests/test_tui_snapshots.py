"""SVG snapshots of every screen at 80x24 and 160x48: seeded fake data, frozen clock, no
cursor blink, no live data (the run screen is captured while the fake runner is paused).

Regenerate after an intended change: ``python -m pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mle_tui.core.profile import load_profile
from mle_tui.tui.app import MleApp
from tui_fakes import FakeRunner, FrozenClock, fake_factory, h100_probe, no_gpu_probe, write_profile

SIZES = [(80, 24), (160, 48)]
IDS = ["80x24", "160x48"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Two finished fake runs under ``runs/`` and the demo profile, in a fixed layout."""
    root = tmp_path_factory.mktemp("snap")
    prof = write_profile(root)
    profile = load_profile(prof)
    FakeRunner(profile, root / "runs" / "a", seed=1, gpus=2).run()
    b = FakeRunner(profile, root / "runs" / "b", seed=2)
    b.run_id = "tui-demo-other"
    b.run()
    return root


@pytest.fixture
def at(workdir, monkeypatch) -> Path:
    monkeypatch.chdir(workdir)
    return workdir


def app_for(**kw) -> MleApp:
    kw.setdefault("gpu_probe", no_gpu_probe)
    kw.setdefault("now_s", FrozenClock())
    kw.setdefault("runs_root", Path("runs"))
    kw.setdefault("records_roots", [Path("runs")])
    kw.setdefault("cursor_blink", False)
    kw.setdefault("profiles", [Path("tui-demo.toml")])
    return MleApp(**kw)


async def until(pilot, cond, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {cond}"
        await pilot.pause(0.05)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_setup_screen(snap_compare, at, size):
    app = app_for()

    async def ready(pilot):
        await until(pilot, lambda: app.gpu_info is not None)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=ready)


def test_setup_screen_gpu_picker(snap_compare, at):
    """Two GPUs detected: the picker lists them; unticking GPU 1 writes 0 into the GPUs field."""
    app = app_for(gpu_probe=h100_probe)

    async def pick(pilot):
        await until(pilot, lambda: app.gpu_info is not None)
        await pilot.pause()
        picker = app.screen.query_one("#gpu-pick")
        picker.deselect(1)
        await pilot.pause()
        assert app.screen.query_one("#gpu_indices").value == "0"
        picker.scroll_visible()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=pick)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_setup_screen_invalid_input(snap_compare, at, size):
    app = app_for()

    async def typo(pilot):
        await until(pilot, lambda: app.gpu_info is not None)
        app.screen.query_one("#max_num_seqs").focus()
        await pilot.press("end", "ctrl+u", *"8..256 x1")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=typo)


def snap_paused_run(snap_compare, fac, tmp_path, size, then=None) -> bool:  # noqa: ANN001
    """Start the sweep from the setup screen with the fake runner factory ``fac``, wait until
    its runner pauses and the app has drawn what it sent, run ``then(pilot, app)`` (more keys,
    assertions), snapshot; the fake runners are stopped afterwards."""
    app = app_for(runner_factory=fac, runs_root=tmp_path)

    async def running(pilot):
        await until(pilot, lambda: app.gpu_info is not None)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: bool(fac.made) and fac.made[0].paused.is_set())
        await until(pilot, lambda: not app._queue and not app._wake)
        await pilot.pause()
        if then is not None:
            await then(pilot, app)
        app.screen.sync(force=True)
        await pilot.pause()

    try:
        return snap_compare(app, terminal_size=size, run_before=running)
    finally:
        for r in fac.made:
            r.request_stop()
        app.finish(timeout_s=10)


def _legend_folded(app) -> bool:  # noqa: ANN001
    return "min–max" in str(app.screen.query_one("#power-legend").render())


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_run_screen(snap_compare, at, size, tmp_path):
    """Two GPUs: a power line each on the right axis (not folded)."""

    async def check(pilot, app):  # noqa: ANN001
        app.screen.sync(force=True)
        await pilot.pause()
        assert not _legend_folded(app)

    assert snap_paused_run(snap_compare, fake_factory(pause_at=(2, 6.0), gpus=2), tmp_path, size, check)


def test_run_screen_eight_gpus(snap_compare, at, tmp_path):
    """80x24 with 8 GPUs: their lines fold into a min/max band."""

    async def check(pilot, app):  # noqa: ANN001
        app.screen.sync(force=True)
        await pilot.pause()
        assert _legend_folded(app)

    assert snap_paused_run(snap_compare, fake_factory(pause_at=(2, 6.0), gpus=8), tmp_path, (80, 24), check)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
@pytest.mark.parametrize("tab", ["1", "2", "3"], ids=["table", "scatter", "config"])
def test_results_screen(snap_compare, at, size, tab):
    app = app_for(run_dir="runs/a")

    async def show(pilot):
        await pilot.pause()
        if tab == "3":
            await pilot.press("down", "down", "enter")
        else:
            await pilot.press(tab)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=show)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_records_screen(snap_compare, at, size):
    app = app_for(run_dir="runs")

    async def scanned(pilot):
        from textual.widgets import DataTable

        await until(pilot, lambda: app.screen.query_one("#runs", DataTable).row_count == 2)
        await pilot.press("space")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=scanned)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_compare_screen(snap_compare, at, size):
    app = app_for(run_dir="runs")

    async def compare(pilot):
        from textual.widgets import DataTable

        await until(pilot, lambda: app.screen.query_one("#runs", DataTable).row_count == 2)
        await pilot.press("space", "down", "space", "c")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=compare)


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_help_screen(snap_compare, at, size):
    app = app_for(run_dir="runs/a")
    assert snap_compare(app, terminal_size=size, press=["f1"])


def test_run_screen_cluster(snap_compare, at, tmp_path):
    """80x24, a fake two-node cluster run: the cluster pane (per node its GPU, configuration and
    power, the queue); ``n`` moves the charts and header to node w2."""
    from cluster_fakes import cluster_factory

    async def next_node(pilot, app):  # noqa: ANN001
        assert app.live.nodes.selected == "w1"
        await pilot.press("n")
        await pilot.pause()
        assert app.live.nodes.selected == "w2"
        app.screen.sync(force=True)
        await pilot.pause()
        assert "w2: 2/6" in str(app.screen.query_one("#run-status").render())

    assert snap_paused_run(snap_compare, cluster_factory(), tmp_path, (80, 24), next_node)
