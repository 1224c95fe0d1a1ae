"""Small records built by hand for report and CLI tests (not a simulation)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from mle_tui.core.config import Config
from mle_tui.core.records import (
    Accounting, Hardware, Latency, LatencyStats, Manifest, Record, SteadyState, Throughput,
)


def llm_record(
    mns: int, pl: int | None, *, tpot_s: float | None, energy_j: float | None,
    status: str = "ok", reasons: list[str] | None = None, e2e_s: float | None = None,
    simulated: bool = True, tokens_per_request: float = 200.0,
) -> Record:
    config = Config(max_num_seqs=mns, power_limit_w=pl)
    ept = None if energy_j is None else energy_j / tokens_per_request
    power = 300.0 + mns
    return Record(
        run_id="test-run",
        config_key=config.key(),
        config=config,
        status=status,  # type: ignore[arg-type]
        reasons=reasons or [],
        simulated=simulated,
        task="chat",
        runtime="sim" if simulated else "vllm",
        model="m",
        weights="dummy",
        hardware=Hardware(power_source="simulated" if simulated else "nvml", gpu_names=["GPU"],
                          gpu_indices=[0], tdp_w=700.0),
        started_unix_s=1.7e9,
        duration_s=60.0,
        num_requests=1024,
        steady_state=SteadyState(rule="saturation", start_s=5.0, end_s=45.0, energy_j=power * 40,
                                 tokens=int(40 * 50 * mns), mean_batch=mns * 0.97),
        energy_per_request_j=energy_j,
        energy_per_token_j=ept,
        avg_power_w=power,
        latency=Latency(
            tpot=None if tpot_s is None else LatencyStats(mean_s=tpot_s, p50_s=tpot_s, count=10),
            e2e=None if e2e_s is None else LatencyStats(mean_s=e2e_s, p50_s=e2e_s, count=10),
        ),
        latency_metric="tpot",
        latency_value_s=tpot_s,
        throughput=Throughput(output_tokens_per_s=50.0 * mns, requests_per_s=mns / 4),
        mean_output_tokens=tokens_per_request,
        tdp_estimate_j=700.0 * 40,
        tdp_overestimation=700.0 / power,
        accounting=None if energy_j is None else Accounting(
            price_usd_per_kwh=0.12, carbon_g_per_kwh=400.0,
            cost_per_1k_requests_usd=energy_j * 1000 / 3.6e6 * 0.12,
            carbon_per_1k_requests_g=energy_j * 1000 / 3.6e6 * 400.0,
        ),
    )


def sample_records() -> list[Record]:
    """Chat sweep: B=8..64 at 700 W, B=32 at 400 W, one invalid and one failed configuration.

    Frontier by (TPOT, J/request): mns8 (20 ms, 300 J), mns16 (30 ms, 200 J),
    mns32-pl400 (45 ms, 120 J), mns64 (90 ms, 100 J). mns32-pl700 (40 ms, 150 J) is not
    dominated either (faster than mns32-pl400). Fastest: mns8.
    """
    return [
        llm_record(8, 700, tpot_s=0.020, energy_j=300.0, e2e_s=4.0),
        llm_record(16, 700, tpot_s=0.030, energy_j=200.0, e2e_s=6.0),
        llm_record(32, 700, tpot_s=0.040, energy_j=150.0, e2e_s=8.0),
        llm_record(32, 400, tpot_s=0.045, energy_j=120.0, e2e_s=9.0),
        llm_record(64, 700, tpot_s=0.090, energy_j=100.0, e2e_s=18.0),
        llm_record(64, 400, tpot_s=0.095, energy_j=130.0, e2e_s=19.0),   # dominated by mns64-pl700
        llm_record(128, 700, tpot_s=0.150, energy_j=60.0, status="invalid",
                   reasons=["mean batch 96.0 < 0.85 x 128"]),
        llm_record(128, 400, tpot_s=None, energy_j=None, status="failed",
                   reasons=["server exited with status 1 (CUDA out of memory)"]),
    ]


def write_run_dir(root: Path, records: list[Record], profile_toml: str = "") -> Path:
    """The documented run-directory layout: run.json and records/<key>.json."""
    (root / "records").mkdir(parents=True, exist_ok=True)
    manifest = Manifest(run_id="test-run", created_unix_s=1.7e9, host="test", power_source="simulated",
                        profile_toml=profile_toml, configs=[r.config_key for r in records], finished=True)
    (root / "run.json").write_bytes(msgspec.json.encode(manifest))
    for r in records:
        (root / "records" / f"{r.config_key}.json").write_bytes(msgspec.json.encode(r))
    return root
