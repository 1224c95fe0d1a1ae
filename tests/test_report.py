"""The Pareto report: rows, marks, recommendation, JSON shape, text and CSV."""

from __future__ import annotations

import csv
import io
import json

import msgspec
import pytest

from mle_tui.core.report import build_report, render_text, to_csv, to_json
from record_factory import llm_record, sample_records


def _keys(rows):
    return [r.key for r in rows]


def test_marks_and_recommendation():
    report = build_report(sample_records(), target_s=0.050)
    assert report.metric == "tpot"
    assert _keys(report.frontier) == ["mns8-tp1-pl700", "mns16-tp1-pl700", "mns32-tp1-pl700",
                                      "mns32-tp1-pl400", "mns64-tp1-pl700"]
    # Lowest energy with TPOT <= 50 ms is B=32 at 400 W (120 J); fastest is B=8 (300 J).
    assert report.recommended is not None and report.recommended.key == "mns32-tp1-pl400"
    assert report.savings_vs_fastest == pytest.approx(1 - 120 / 300)
    fastest = [r for r in report.rows if r.fastest]
    assert _keys(fastest) == ["mns8-tp1-pl700"]
    # Rows sorted by latency, records without latency last; failed rows are kept, never marked.
    assert report.rows[-1].status == "failed" and report.rows[-1].latency_ms is None
    lat = [r.latency_ms for r in report.rows if r.latency_ms is not None]
    assert lat == sorted(lat)
    invalid = next(r for r in report.rows if r.status == "invalid")
    assert not invalid.frontier and not invalid.recommended  # lower energy, but not ok
    assert report.simulated


def test_brute_force_frontier_on_ok_rows():
    report = build_report(sample_records(), target_s=None)
    ok = [r for r in report.rows if r.status == "ok"]
    for r in ok:
        dominated = any(
            (o.latency_ms <= r.latency_ms and o.energy_per_request_j <= r.energy_per_request_j)
            and (o.latency_ms < r.latency_ms or o.energy_per_request_j < r.energy_per_request_j)
            for o in ok
        )
        assert r.frontier == (not dominated), r.key
    # No target: lowest energy overall among ok records.
    assert report.recommended.key == "mns64-tp1-pl700"


def test_nothing_meets_target():
    report = build_report(sample_records(), target_s=0.010)
    assert report.recommended is None and report.savings_vs_fastest is None
    assert "nothing meets" in report.message
    text = render_text(report)
    assert "<- recommended" not in text and "Nothing meets" in text


def test_no_valid_records():
    recs = [llm_record(8, None, tpot_s=None, energy_j=None, status="failed", reasons=["boom"])]
    report = build_report(recs, target_s=0.1)
    assert report.recommended is None and report.frontier == []
    assert "no valid configuration" in report.message
    assert "B=8 default W: failed: boom" in render_text(report)


def test_metric_override_reads_latency_stats():
    report = build_report(sample_records(), target_s=10.0, metric="e2e")
    assert report.metric == "e2e"
    by_key = {r.key: r for r in report.rows}
    assert by_key["mns16-tp1-pl700"].latency_ms == pytest.approx(6000.0)
    # E2E <= 10 s: B=32 at 400 W (9 s, 120 J) is the lowest energy that meets it.
    assert report.recommended.key == "mns32-tp1-pl400"


def test_json_has_exactly_the_documented_keys():
    report = build_report(sample_records(), target_s=0.05)
    data = json.loads(to_json(report))
    assert list(data) == ["frontier", "recommended", "savings_vs_fastest", "target_s", "metric",
                          "rows", "message", "simulated", "problems", "sweep", "with_margin"]
    assert data["recommended"]["key"] == "mns32-tp1-pl400"
    assert data["target_s"] == 0.05 and data["simulated"] is True
    assert len(data["rows"]) == 8 and len(data["frontier"]) == 5
    row = data["rows"][0]
    for field in ("label", "latency_ms", "energy_per_request_j", "energy_per_unit_j", "avg_power_w",
                  "throughput", "status", "frontier", "recommended", "cost_per_1k_requests_usd",
                  "carbon_per_1k_requests_g", "tdp_overestimation"):
        assert field in row


def test_text_table():
    report = build_report(sample_records(), target_s=0.05)
    text = render_text(report, title="Pareto report: x")
    lines = text.splitlines()
    assert lines[0] == "Pareto report: x"
    assert "SIMULATED" in lines[1]
    header = next(line for line in lines if "Configuration" in line)
    for col in ("TPOT ms", "J/req", "J/token", "Avg W", "tok/s", "Status"):
        assert col in header
    rec_line = next(line for line in lines if "<- recommended" in line)
    assert rec_line.startswith("*") and "B=32 400 W" in rec_line and "120.0" in rec_line
    assert sum(1 for line in lines if line.startswith("*")) == 5
    assert "saving 60.0% vs fastest" in text
    assert "Recommended (B=32 400 W) per 1,000 requests: $0.0040, 13.3 gCO2e." in text  # 120 J x 1000 / 3.6e6 x $0.12
    assert "TDP estimate" in text


def test_a_recommendation_at_the_target_says_so_and_names_one_with_margin():
    recs = [llm_record(256, 400, tpot_s=0.0196, energy_j=6.72), llm_record(256, 450, tpot_s=0.0179, energy_j=6.77),
            llm_record(128, 400, tpot_s=0.0119, energy_j=8.05)]
    report = build_report(recs, target_s=0.020)
    assert report.recommended.key == "mns256-tp1-pl400" and report.with_margin.key == "mns256-tp1-pl450"
    text = render_text(report)
    assert ("Its TPOT of 19.6 ms is within 5% of the target: another GPU of this model may miss it; with 5% to "
            "spare: B=256 450 W, 6.77 J/request (+0.7%), TPOT 17.9 ms.") in text
    assert json.loads(to_json(report))["with_margin"]["key"] == "mns256-tp1-pl450"
    alone = build_report(recs[:1], target_s=0.020)
    assert alone.with_margin is None
    assert "no configuration here meets the target with 5% to spare." in render_text(alone)
    roomy = build_report(recs, target_s=0.025)  # 19.6 ms has 21.6 % to spare: no line
    assert roomy.with_margin is None and "within 5%" not in render_text(roomy)


def test_cost_from_profile_when_record_has_no_accounting():
    rec = llm_record(8, None, tpot_s=0.02, energy_j=360.0)
    rec.accounting = None
    report = build_report([rec], target_s=None, price_usd_per_kwh=0.10, carbon_g_per_kwh=500.0)
    row = report.rows[0]
    assert row.cost_per_1k_requests_usd == pytest.approx(0.01)     # 0.1 kWh x $0.10
    assert row.carbon_per_1k_requests_g == pytest.approx(50.0)


def test_csv_states_formulas_and_parses():
    report = build_report(sample_records(), target_s=0.05)
    text = to_csv(report)
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert any("tpot" in c and "(e2e - ttft) / (output_tokens - 1)" in c for c in comments)
    assert any("eq. 2" in c for c in comments)
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    rows = list(csv.DictReader(io.StringIO(body)))
    assert len(rows) == 8
    rec = [r for r in rows if r["recommended"] == "1"]
    assert [r["key"] for r in rec] == ["mns32-tp1-pl400"]
    assert float(rec[0]["energy_per_request_j"]) == 120.0
    failed = next(r for r in rows if r["status"] == "failed")
    assert "out of memory" in failed["reasons"] and failed["latency_ms"] == ""


def test_report_roundtrips_through_msgspec():
    report = build_report(sample_records(), target_s=0.05)
    from mle_tui.core.report import Report

    again = msgspec.json.decode(to_json(report), type=Report)
    assert again == report
