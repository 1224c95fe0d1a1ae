"""Multi-GPU bookkeeping on simulated GPUs: a TP·PP = k configuration samples, limits and
records all k GPUs (per-GPU energy summing to the record's), the node's other GPUs are reported
beside the record and never counted in it, and a GPU of the configuration left idle (a wrong
device mapping) makes the record invalid."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from mle_tui.core.measure.analysis import analyse
from mle_tui.core.measure.gpus import active_gate
from mle_tui.core.measure.trace import decode_trace
from mle_tui.core.profile import SteadySpec
from mle_tui.core.records import GpuEnergy
from mle_tui.core.store import RunStore

from test_runner_sim import diffusion_profile, llm_profile, run_one


def _records(tmp_path: Path):
    return sorted(RunStore(tmp_path / "run").load_records(), key=lambda r: r.config_key)


def _run(tmp_path: Path, tp: int, node: int, *, pp: int = 1, limit: int = 400, sim: str = ""):
    p = llm_profile("32", power=f"tensor_parallel = [{tp}]\npipeline_parallel = [{pp}]\npower_limit_w = [{limit}]",
                    extra=f"[sim]\nnum_gpus = {node}\n{sim}")
    run_one(tmp_path, p)
    (rec,) = _records(tmp_path)
    return rec


@pytest.mark.parametrize("tp,pp,node", [(2, 1, 4), (8, 1, 8), (2, 2, 8)])
def test_k_gpus_sampled_limited_and_split(tmp_path: Path, tp: int, pp: int, node: int) -> None:
    k = tp * pp
    rec = _run(tmp_path, tp, node, pp=pp)
    assert rec.status == "ok", rec.reasons
    assert rec.hardware.gpu_indices == list(range(k))
    assert rec.hardware.power_limit_w == [400.0] * k and rec.hardware.original_power_limit_w == [700.0] * k
    assert [g.index for g in rec.per_gpu] == list(range(k))
    # The record's energy is the sum over its k GPUs' counters, each GPU about 1/k of it.
    assert math.isclose(sum(g.energy_j for g in rec.per_gpu), rec.steady_state.energy_j, rel_tol=1e-9)
    assert math.isclose(sum(g.share for g in rec.per_gpu), 1.0, rel_tol=1e-9)
    assert all(abs(g.share - 1 / k) < 0.02 for g in rec.per_gpu)
    powers = [g.avg_power_w for g in rec.per_gpu]
    assert all(100 < w <= 410 for w in powers) and max(powers) / min(powers) < 1.05
    assert math.isclose(rec.avg_power_w, sum(g.avg_power_w for g in rec.per_gpu), rel_tol=1e-9)
    # Per GPU in the timeline, summing to the total.
    tl = rec.power_timeline
    assert sorted(tl.per_gpu_w) == [str(i) for i in range(k)]
    for i in (0, len(tl.t_s) // 2, -1):
        assert math.isclose(sum(v[i] for v in tl.per_gpu_w.values()), tl.total_w[i], rel_tol=1e-9)
    # TDP estimate with k GPUs: TDP x k x window.
    assert math.isclose(rec.tdp_estimate_j, 700.0 * k * rec.steady_state.duration_s, rel_tol=1e-9)
    # The node's other GPUs: reported at idle power, not part of the record's energy.
    assert [g.index for g in rec.idle_gpus] == list(range(k, node))
    assert all(abs(g.avg_power_w - 75.0) < 1.0 and g.share is None for g in rec.idle_gpus)
    gates = {g.name: g for g in rec.steady_state.gates}
    assert gates["gpus_active"].ok


@pytest.mark.parametrize("tp,node,idle", [(2, 2, 1), (8, 8, 5)])
def test_a_mapped_gpu_left_idle_makes_the_record_invalid(tmp_path: Path, tp: int, node: int, idle: int) -> None:
    rec = _run(tmp_path, tp, node, sim=f"idle_gpus = [{idle}]")
    assert rec.status == "invalid"
    gate = {g.name: g for g in rec.steady_state.gates}["gpus_active"]
    assert not gate.ok and f"GPU {idle} averaged" in gate.message
    assert any(f"GPU {idle} averaged" in r for r in rec.reasons)
    # The idle GPU's counter still counts: the record's energy is over all k GPUs.
    assert math.isclose(sum(g.energy_j for g in rec.per_gpu), rec.steady_state.energy_j, rel_tol=1e-9)


def test_reanalysis_reproduces_per_gpu_and_idle_views(tmp_path: Path) -> None:
    rec = _run(tmp_path, 2, 3)
    trace_path = tmp_path / "run" / rec.analysis.trace
    trace = decode_trace(trace_path.read_bytes())
    assert trace.idle_power is not None and trace.idle_power.gpu_indices == [2]
    again = analyse(trace, source="live", trace_file=rec.analysis.trace)
    assert again.per_gpu == rec.per_gpu and again.idle_gpus == rec.idle_gpus
    # Switching the gate off by setting: the same figures, no gpus_active gate.
    off = analyse(trace, SteadySpec(min_gpu_power_ratio=0.0, min_gpu_utilisation_pct=0.0))
    assert "gpus_active" not in {g.name for g in off.steady_state.gates}
    assert off.per_gpu == rec.per_gpu


def test_diffusion_on_one_gpu_of_a_node_reports_the_idle_one(tmp_path: Path) -> None:
    p = diffusion_profile()
    text_node = p.sim.__class__(num_gpus=2)
    p = p.__class__(**{**{f: getattr(p, f) for f in p.__struct_fields__}, "sim": text_node})
    run_one(tmp_path, p)
    (rec,) = _records(tmp_path)
    assert rec.status == "ok", rec.reasons
    assert [g.index for g in rec.per_gpu] == [0] and rec.per_gpu[0].share == pytest.approx(1.0)
    assert math.isclose(rec.per_gpu[0].energy_j, sum(b.energy_j for b in rec.batches if not b.warmup),
                        rel_tol=1e-9)
    assert [g.index for g in rec.idle_gpus] == [1] and rec.idle_gpus[0].avg_power_w == pytest.approx(75.0, abs=1)


def _g(index: int, w: float, util: float | None = None) -> GpuEnergy:
    return GpuEnergy(index=index, energy_j=w * 10, avg_power_w=w, utilisation_pct=util)


def test_active_gate_rules() -> None:
    assert active_gate([_g(0, 300)], 0.5, 5.0) is None  # one GPU, no utilisation: nothing to judge
    assert active_gate([_g(0, 300), _g(1, 160)], 0.5, 5.0).ok
    bad = active_gate([_g(0, 300), _g(1, 140)], 0.5, 5.0)
    assert not bad.ok and bad.value == pytest.approx(140 / 300) and "GPU 1" in bad.message
    # Utilisation catches a whole configuration on the wrong devices (both GPUs equally idle).
    both = active_gate([_g(0, 80, 0.0), _g(1, 80, 0.0)], 0.5, 5.0)
    assert not both.ok and "GPU 0 was 0 % utilised" in both.message
    assert not active_gate([_g(0, 300, 1.0)], 0.5, 5.0).ok
    assert active_gate([_g(0, 300, 1.0)], 0.5, 0.0) is None  # disabled by setting


def test_workers_orphaned_by_a_server_shutdown_are_not_strangers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TP server's workers outlive their parent for a moment at shutdown (re-parented, so no
    longer in our process tree) while NVML still lists them: once ours, they stay ours."""
    import threading

    from mle_tui.core import config_run
    from mle_tui.core.power.health import GpuProcess, HealthReading

    trees = iter([{10, 11, 12}, {10}, {10}])  # the runner, the server's two workers; then orphaned
    seen_own: list[set[int]] = []
    done = threading.Event()

    def fake_read_health(kind, indices, *, sim_gpus=None, own_pids=None):  # noqa: ANN001, ANN202
        seen_own.append(set(own_pids))
        if len(seen_own) >= 3:
            done.set()
        procs = [GpuProcess(pid=11), GpuProcess(pid=12)]
        return [HealthReading(index=i, processes=procs, strangers=[p for p in procs if p.pid not in own_pids])
                for i in indices]

    monkeypatch.setattr(config_run, "process_tree", lambda pid: next(trees, {10}))
    monkeypatch.setattr(config_run, "read_health", fake_read_health)
    monkeypatch.setattr(config_run.HealthWatch, "PERIOD_S", 0.001)
    watch = config_run.HealthWatch("nvml", [0, 1], None, type("C", (), {"now_s": staticmethod(lambda: 0.0)})(),
                                   lambda ev: None)
    watch.start()
    assert done.wait(30)
    watch.stop()
    assert all({11, 12} <= own for own in seen_own[:3])
    assert watch.strangers.reason() is None


def test_setup_form_gpu_choice() -> None:
    """The setup form's GPUs field: parsed, checked against the detected GPUs, and the
    parallel degree checked against the chosen ones."""
    from mle_tui.core.records import GpuInfo
    from mle_tui.tui.form import build_profile, parse_indices

    assert parse_indices("0, 2") == ([0, 2], None) and parse_indices("") == ([], None)
    assert parse_indices("0,0")[1] and parse_indices("a")[1] and parse_indices("-1")[1]
    import msgspec

    from mle_tui.core.profile import GpuSpec

    base = msgspec.structs.replace(llm_profile("32", power="tensor_parallel = [2]"), runtime="vllm", gpu=GpuSpec())
    gpus = [GpuInfo(index=i, name="H200", min_power_limit_w=200.0, max_power_limit_w=700.0) for i in range(4)]
    ok = build_profile(base, {"gpu_indices": "2,3"}, gpus=gpus)
    assert ok.ok and ok.profile.gpu.indices == [2, 3]
    assert "tensor_parallel" in build_profile(base, {"gpu_indices": "3"}, gpus=gpus).errors
    assert "gpu_indices" in build_profile(base, {"gpu_indices": "5"}, gpus=gpus).errors
    assert build_profile(base, {"gpu_indices": ""}, gpus=gpus).profile.gpu.indices is None


def test_power_legend_folds_beyond_four_gpus() -> None:
    import numpy as np

    from mle_tui.tui.charts import TimeData, gpu_band, power_legend

    per = [np.array([100.0 + 10 * g, 200.0 + g]) for g in range(8)]
    d = TimeData(power_t=np.array([0.0, 1.0]), total_w=sum(per), per_gpu_w=per)
    lo, hi = gpu_band(per)
    assert list(lo) == [100.0, 200.0] and list(hi) == [170.0, 207.0]
    assert "8 GPUs min–max→ 200–207" in power_legend(d)
    d2 = TimeData(power_t=d.power_t, total_w=per[0] + per[1], per_gpu_w=per[:2])
    text = power_legend(d2, [400.0, 400.0])
    assert "GPU→" in text and "201" in text and "limit 400" in text and "min–max" not in text


def test_side_by_side_sweeps_are_recorded_as_neighbours(tmp_path: Path) -> None:
    """A sweep holding other GPUs of the host while a configuration runs is named in its
    record (measurements on a shared host interfere); our own GPUs and free locks are not."""
    from mle_tui.core.power.gpu_lock import GpuLock, held_by_others, neighbour_lines

    state = tmp_path / "state"
    mine = GpuLock(state, "gpu-0", 0)
    other2, other3 = GpuLock(state, "gpu-2", 2), GpuLock(state, "gpu-3", 3)
    free = GpuLock(state, "gpu-1", 1)
    assert mine.try_acquire("/runs/me") and other2.try_acquire("/runs/them") and other3.try_acquire("/runs/them")
    assert free.try_acquire("/runs/old")
    free.release()  # its lock file stays, unlocked
    try:
        held = held_by_others(state, {"gpu-0"})
        assert sorted(h["index"] for h in held) == [2, 3]
        assert neighbour_lines(state, {"gpu-0"}) == [f"run dir /runs/them (pid {os.getpid()}) on GPUs 2, 3"]
        # a GPU locked by UUID is named by it: the holder's index counts the GPUs its mask shows
        masked = GpuLock(state, "GPU-9b1f4ade-7605-c174", 0)
        assert masked.try_acquire("/runs/masked")
        assert f"run dir /runs/masked (pid {os.getpid()}) on GPU GPU-9b1f4ade" in neighbour_lines(state, {"gpu-0"})
        masked.release()
    finally:
        for lk in (mine, other2, other3):
            lk.release()
    assert held_by_others(state, {"gpu-0"}) == []


def test_neighbours_reach_the_record(tmp_path: Path) -> None:
    rec = _run(tmp_path, 1, 2)
    trace = decode_trace((tmp_path / "run" / rec.analysis.trace).read_bytes())
    trace.neighbours = ["run dir /runs/them (pid 1) on GPU 1"]
    again = analyse(trace)
    assert again.neighbours == trace.neighbours and again.status == rec.status
    assert any("another mle-tui sweep on this host" in r for r in again.reasons)
    # The same cluster sweep's other node on this host (its agent's scratch run directory) is
    # named as that node, not as another sweep; another run id's scratch stays a foreign sweep.
    trace.neighbours = [f"run dir /s/cluster/gpu1/scratch/{trace.run_id} (pid 7) on GPU GPU-9df681c0",
                        "run dir /s/cluster/gpu1/scratch/0123456789ab (pid 8) on GPU GPU-11111111"]
    again = analyse(trace)
    warns = [r for r in again.reasons if "at the same time" in r]
    assert warns[0].startswith("warning: this sweep's node gpu1 ran on the same host at the same time (GPU GPU-9df681c0)")
    assert warns[1].startswith("warning: another mle-tui sweep on this host") and "0123456789ab" in warns[1]


def test_utilisation_needs_three_samples_inside_the_window() -> None:
    from mle_tui.core.measure.gpus import utilisation

    t = [0.5, 1.5, 2.5, 3.5, 9.0]
    pct = [[90.0, 95.0, 100.0, 0.0, 0.0]]
    assert utilisation(t, pct, [(0.0, 3.0)], 1) == [pytest.approx(95.0)]
    assert utilisation(t, pct, [(0.0, 2.0)], 1) == [None]  # two samples: not judged
    assert utilisation(t, pct, [(0.0, 1.0), (2.0, 4.0)], 1) == [pytest.approx(190 / 3)]


def test_run_on_chosen_gpus_from_the_command_line(tmp_path: Path) -> None:
    """`mle-tui run --gpus 1`: the sweep takes GPU 1 of the (simulated) node and reports GPU 0
    beside its records; a bad --gpus is one line, exit 2, nothing created."""
    import subprocess
    import sys

    from mle_tui.core.toml_text import struct_to_toml

    prof = tmp_path / "p.toml"
    prof.write_text(struct_to_toml(llm_profile("16", num=96, repeats=1)))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mle_tui.tui.cli", "run", str(prof), "--headless", "--out", str(out)]
    done = subprocess.run([*cmd, "--gpus", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (rec,) = RunStore(out).load_records()
    assert rec.hardware.gpu_indices == [1] and [g.index for g in rec.idle_gpus] == [0]
    bad = subprocess.run([*cmd[:-1], str(tmp_path / "bad"), "--gpus", "1,1"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "--gpus" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_gpu_profiles_load_and_fit_their_gpus() -> None:
    """Every GPU profile (the H200 runs, and the 4-/8-GPU TP scaling runs that wait for a node of
    that size) decodes, and its widest configuration fits the GPUs it names."""
    from mle_tui.core.profile import load_profile

    paths = sorted((Path(__file__).resolve().parents[1] / "profiles" / "gpu").glob("*.toml"))
    assert any("scaling-x8" in p.name for p in paths)
    for path in paths:
        p = load_profile(path)
        widest = max(c.num_gpus for c in p.configs())
        assert p.gpu.indices is None or widest <= len(p.gpu.indices), path.name


def test_report_lists_the_gpu_split_and_the_idle_gpus() -> None:
    import subprocess
    import sys

    run = Path(__file__).resolve().parents[1] / "records" / "h200x2-vllm-llama3.1-8b-tp"
    out = subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", "report", str(run), "--target", "100ms"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "GPUs (energies over each record's window" in text
    from mle_tui.core.store import RunStore

    rec = next(r for r in RunStore(run).load_records() if r.config_key == "mns256-tp2-pl400")
    g0 = rec.per_gpu[0]
    assert f"B=256 TP=2 400 W: GPUs 0: {g0.avg_power_w:.0f} W {g0.share:.1%}" in text
    assert "node's other 1 GPU (1) drew" in text

