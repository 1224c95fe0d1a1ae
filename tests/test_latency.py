"""Latency statistics with vLLM bench serve definitions, on hand-computed numbers."""

from __future__ import annotations

import pytest

from mle_tui.core.measure.latency import request_row, stats, summarise
from mle_tui.core.records import FORMULAS


def test_stats_linear_interpolation() -> None:
    s = stats([4.0, 1.0, 3.0, 2.0], "f")
    assert s.count == 4 and s.formula == "f"
    assert s.mean_s == pytest.approx(2.5)
    assert s.p50_s == pytest.approx(2.5)
    assert s.p90_s == pytest.approx(3.7)  # 1 + 0.9 * 3 = position 2.7 -> 3 + 0.7
    assert s.p99_s == pytest.approx(3.97)


def test_stats_empty_and_nonfinite() -> None:
    e = stats([], "f")
    assert e.count == 0 and e.mean_s is None and e.p99_s is None
    s = stats([1.0, float("nan"), 3.0], "f")
    assert s.count == 2 and s.mean_s == 2.0


def test_request_row_hand_computed() -> None:
    row, gaps = request_row(id=7, send_s=10.0, chunk_times_s=[10.5, 10.6, 10.8, 11.1], input_tokens=20,
                            output_tokens=4, hit_cap=True)
    assert row.ttft_s == pytest.approx(0.5)
    assert row.e2e_s == pytest.approx(1.1)
    assert row.tpot_s == pytest.approx(0.6 / 3)
    assert gaps == pytest.approx([0.1, 0.2, 0.3])
    assert row.itl_count == 3 and row.first_token_s == 10.5 and row.end_s == 11.1 and row.hit_cap


def test_request_row_multi_token_chunks_and_single_token() -> None:
    # 2 chunks carrying 5 tokens: TPOT divides by output_tokens - 1, ITL has one gap.
    row, gaps = request_row(id=1, send_s=0.0, chunk_times_s=[0.2, 1.0], input_tokens=3, output_tokens=5)
    assert row.tpot_s == pytest.approx(0.8 / 4)
    assert gaps == pytest.approx([0.8])
    one, g1 = request_row(id=2, send_s=0.0, chunk_times_s=[0.3], input_tokens=3, output_tokens=1)
    assert one.tpot_s is None and g1 == [] and one.e2e_s == pytest.approx(0.3)
    failed, g2 = request_row(id=3, send_s=0.0, chunk_times_s=[], input_tokens=3, output_tokens=0, ok=False,
                             error="500")
    assert failed.ttft_s is None and failed.first_token_s is None and g2 == [] and not failed.ok


def test_summarise_uses_ok_rows_and_states_formulas() -> None:
    r1, g1 = request_row(id=1, send_s=0.0, chunk_times_s=[1.0, 2.0, 3.0], input_tokens=1, output_tokens=3)
    r2, g2 = request_row(id=2, send_s=0.0, chunk_times_s=[2.0, 2.5, 3.0], input_tokens=1, output_tokens=3)
    r3, _ = request_row(id=3, send_s=0.0, chunk_times_s=[9.0, 99.0], input_tokens=1, output_tokens=2, ok=False)
    lat = summarise([r1, r2, r3], g1 + g2)
    assert lat.ttft.count == 2 and lat.ttft.mean_s == pytest.approx(1.5)
    assert lat.tpot.mean_s == pytest.approx((1.0 + 0.5) / 2)
    assert lat.e2e.mean_s == pytest.approx(3.0)
    assert lat.itl.count == 4 and lat.itl.mean_s == pytest.approx(0.75)
    assert lat.tpot.formula == FORMULAS["tpot"] and lat.itl.formula == FORMULAS["itl"]
