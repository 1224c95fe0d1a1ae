"""Traces and reanalysis: a record recomputed from its trace equals the record written live
(one code path), for generated sweeps; settings overrides; bad traces; the CLI."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mle_tui.core.measure.analysis import analyse
from mle_tui.core.measure.trace import TRACE_SCHEMA_VERSION, decode_trace, encode_trace, pack_us, unpack_us
from mle_tui.core.reanalyse import reanalyse, traces_of
from mle_tui.core.records import Record
from mle_tui.core.runner import SweepRunner
from mle_tui.core.runtimes.sim import SimRuntime
from mle_tui.core.store import RunStore
from test_runner_sim import diffusion_profile, llm_profile


def _same(a: Record, b: Record) -> None:
    """Equal to 1e-9 relative in every number, identical elsewhere (the source label aside)."""
    da, db = msgspec.to_builtins(a), msgspec.to_builtins(b)
    da["analysis"]["source"] = db["analysis"]["source"] = "-"

    def walk(x, y, path="record"):  # noqa: ANN001, ANN202
        if isinstance(x, float) or isinstance(y, float):
            assert x is not None and y is not None, path
            if math.isnan(x) and math.isnan(y):
                return
            assert x == pytest.approx(y, rel=1e-9, abs=1e-12), path
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), path
            for k in x:
                walk(x[k], y[k], f"{path}.{k}")
        elif isinstance(x, list):
            assert len(x) == len(y), path
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{path}[{i}]")
        else:
            assert x == y, path

    walk(da, db)


def _run(tmp: Path, profile) -> Path:  # noqa: ANN001
    out = tmp / "run"
    SweepRunner(profile, out, runtime=SimRuntime()).run()
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(B=st.sampled_from([4, 8, 16, 48]), num=st.integers(24, 160), rule=st.sampled_from(["saturation", "request-count"]),
       limit=st.sampled_from(["", "power_limit_w = [300]", "power_limit_w = [650]"]), seed=st.integers(0, 50))
def test_reanalysis_reproduces_live_records(tmp_path_factory, B: int, num: int, rule: str, limit: str,
                                            seed: int) -> None:
    tmp = tmp_path_factory.mktemp("r")
    profile = llm_profile(str(B), power=limit, rule=rule, num=num, repeats=1,
                          extra=f"[sim]\nseed = {seed}\n")
    out = _run(tmp, profile)
    live = {r.config_key: r for r in RunStore(out).load_records()}
    res = reanalyse(out)
    again = {r.config_key: r for r in RunStore(Path(res.out_dir)).load_records()}
    assert live.keys() == again.keys() and live
    for k in live:
        assert live[k].analysis is not None and live[k].analysis.source == "live"
        assert again[k].analysis is not None and again[k].analysis.source == "reanalysis"
        _same(live[k], again[k])


def test_diffusion_reanalysis_reproduces_live_record(tmp_path: Path) -> None:
    out = _run(tmp_path, diffusion_profile())
    (live,) = RunStore(out).load_records()
    (again,) = RunStore(Path(reanalyse(out).out_dir)).load_records()
    _same(live, again)
    assert live.energy_per_image_j and live.energy_per_image_j > 0


def test_trace_holds_everything_at_full_resolution(tmp_path: Path) -> None:
    out = _run(tmp_path, llm_profile("16", num=96, repeats=1))
    (rec,) = RunStore(out).load_records()
    (path,) = traces_of(out).values()
    trace = decode_trace(path.read_bytes())
    assert trace.config_key == rec.config_key and trace.schema_version == TRACE_SCHEMA_VERSION == 5
    assert len(trace.requests) == len(rec.requests) == 96
    assert trace.power is not None and len(trace.power.t_s) >= len(rec.power_timeline.t_s)
    assert trace.power.counter_t_s and len(trace.power.counter_j) == 1
    assert len(trace.batch.t_s) >= len(rec.batch_timeline.t_s) > 0
    assert trace.token_times_s and trace.token_counts_exact
    assert {m.label for m in trace.marks} == {"start", "end"}
    assert rec.analysis is not None and rec.analysis.trace == f"traces/{path.name}"
    # Encoding is lossless.
    assert decode_trace(encode_trace(trace)) == trace


def test_overrides_change_the_method_and_are_recorded(tmp_path: Path) -> None:
    out = _run(tmp_path, llm_profile("16"))
    (live,) = RunStore(out).load_records()
    res = reanalyse(out, tmp_path / "rc", rule="request-count", min_window_s=1e6)
    (rec,) = RunStore(tmp_path / "rc").load_records()
    assert rec.analysis.settings["rule"] == "request-count" and rec.analysis.settings["min_window_s"] == 1e6
    assert rec.steady_state.rule == "request-count"
    assert rec.status == "invalid" and any("steady window" in r for r in rec.reasons)
    assert live.status == "ok"
    assert res.changes[0].old_status == "ok" and res.changes[0].new_status == "invalid"
    # With the settings it ran with, the same figures.
    (same,) = RunStore(Path(reanalyse(out).out_dir)).load_records()
    assert same.status == "ok" and same.energy_per_request_j == live.energy_per_request_j
    # The measured records are untouched; writing twice into one --out is refused.
    assert RunStore(out).load_records()[0] == live
    from mle_tui.core.errors import InputError

    with pytest.raises(InputError):
        reanalyse(out, tmp_path / "rc")


def test_analysis_is_pure_same_trace_same_record(tmp_path: Path) -> None:
    out = _run(tmp_path, llm_profile("8", num=64, repeats=1))
    (path,) = traces_of(out).values()
    trace = decode_trace(path.read_bytes())
    a, b = analyse(trace), analyse(decode_trace(path.read_bytes()))
    assert msgspec.json.encode(a) == msgspec.json.encode(b)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_reanalyse_and_a_corrupt_trace(tmp_path: Path) -> None:
    out = _run(tmp_path, llm_profile("8", num=64, repeats=1))
    r = _cli("reanalyse", str(out))
    assert r.returncode == 0, r.stderr
    assert "1 records reanalysed" in r.stdout and "+0.0%" in r.stdout
    (path,) = traces_of(out).values()
    path.write_bytes(path.read_bytes()[:100])
    r = _cli("reanalyse", str(out), "--out", str(tmp_path / "x"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "trace" in lines[0]
    r = _cli("reanalyse", str(out), "--min-window-s", "nan")
    assert r.returncode == 2 and "--min-window-s" in r.stderr


def test_cli_set_overrides_any_setting_and_refuses_bad_ones_before_writing(tmp_path: Path) -> None:
    out = _run(tmp_path, llm_profile("8", num=64, repeats=1))
    r = _cli("reanalyse", str(out), "--set", "max_refill_s=1", "--set", "token_count=client",
             "--out", str(tmp_path / "legacy"))
    assert r.returncode == 0, r.stderr
    (rec,) = RunStore(tmp_path / "legacy").load_records()
    assert rec.analysis.settings["max_refill_s"] == 1.0 and rec.analysis.settings["token_count"] == "client"
    assert rec.steady_state.token_source in ("client timeline", "client chunks")
    for bad, field in (("bogus=1", "--set bogus"), ("max_refill_s=-1", "max_refill_s"),
                       ("token_count=foo", "token_count"), ("noequals", "--set")):
        r = _cli("reanalyse", str(out), "--set", bad, "--out", str(tmp_path / "bad"))
        assert r.returncode == 2 and field in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bad").exists()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 400, allow_nan=False), max_size=300))
def test_gap_packing_keeps_every_gap_to_50_ns(gaps: list[float]) -> None:
    import numpy as np

    back = unpack_us(pack_us(gaps))
    assert len(back) == len(gaps)
    assert np.all(np.abs(back - np.asarray(gaps)) <= 0.5e-7 * (1 + 1e-6) + 1e-12)
    assert unpack_us(pack_us(back)).tolist() == back.tolist()  # a fixed point: reanalysis is exact
