"""Benchmark (a script, not a test): the trace of a one-hour configuration on 8 GPUs -- its size
on disk and the time to decode and analyse it -- and ``report`` over many full records.

    python tests/bench_analysis.py [--gpus 8] [--requests 10000] [--records 1000]

Prints figures; asserts nothing. Goals (issue 16): trace <= 20 MB; detection + energy +
latency + request rows <= 100 ms; report over 1,000 full records <= 2 s and <= 2x their bytes.
"""

from __future__ import annotations

import argparse
import gc
import random
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from mle_tui.core.config import Config
from mle_tui.core.measure.analysis import analyse
from mle_tui.core.measure.power_trace import PowerTrace
from mle_tui.core.measure.trace import BatchTrace, Trace, decode_trace, encode_trace, pack_us
from mle_tui.core.records import Hardware, RequestRow


def hour_trace(gpus: int, num_requests: int, mean_tokens: int, seed: int = 0) -> Trace:
    rng = np.random.default_rng(seed)
    B = 256
    t = np.arange(36_000) * 0.1 + rng.uniform(0, 0.002, 36_000)
    busy = (t > 60) & (t < 3480)
    inst = [np.where(busy, 520.0, 120.0) + rng.normal(0, 15, len(t)) for _ in range(gpus)]
    ct = np.arange(3_600) * 1.0 + 0.05
    counter = [np.interp(ct, t, np.cumsum(p * 0.1)) + 1e9 for p in inst]
    bt = np.arange(7_200) * 0.5
    run = np.where(bt < 60, B * bt / 60, np.where(bt < 3480, B - rng.integers(0, 30, len(bt)), 0.0))
    wait = np.where(bt < 3480, 1000.0, 0.0)
    gen = np.cumsum(run * 0.5 * 40)
    rows, gaps, first, fin = [], [], [], []
    times = np.zeros(0)
    for i in range(num_requests):
        start = min(3400.0, i * 3400.0 / num_requests) + random.random()
        n = max(2, int(rng.exponential(mean_tokens)))
        step = rng.uniform(0.02, 0.06)
        ch = start + 0.2 + step * np.arange(n)
        rows.append(RequestRow(id=i, send_s=0.0, first_token_s=float(ch[0]), end_s=float(ch[-1]), input_tokens=200,
                               output_tokens=n, ttft_s=float(ch[0]), tpot_s=float(step), e2e_s=float(ch[-1]),
                               itl_count=n - 1))
        gaps.append(np.diff(ch))
        first.append(float(ch[0]))
        fin.append(float(ch[-1]))
        times = ch if not len(times) else times
    all_gaps = np.concatenate(gaps)
    bins = np.arange(0.0, 3600.0, 0.01)
    counts = rng.poisson(40, len(bins))
    return Trace(
        run_id="bench", config_key="mns256-tp8-pl700", config=Config(max_num_seqs=B, tensor_parallel=gpus),
        task="chat", runtime="vllm", model="bench", weights="dummy", latency_metric="tpot", is_llm=True,
        simulated=True, hardware=Hardware(power_source="simulated", gpu_names=["Simulated"] * gpus,
                                          gpu_indices=list(range(gpus)), tdp_w=700.0),
        started_unix_s=0.0, end_s=3600.0, num_requests=num_requests,
        power=PowerTrace(gpu_indices=list(range(gpus)), t_s=t.tolist(), instant_w=[p.tolist() for p in inst],
                         average_w=[p.tolist() for p in inst], memory_w=[(p * 0.15).tolist() for p in inst],
                         counter_t_s=ct.tolist(), counter_j=[c.tolist() for c in counter]),
        batch=BatchTrace(t_s=bt.tolist(), running=run.tolist(), waiting=wait.tolist(),
                         kv_cache_usage=(run / B).tolist(), preemptions_total=[0.0] * len(bt),
                         generation_tokens_total=gen.tolist()),
        batch_source="bench", first_token_s=first, finish_s=fin, requests=rows,
        itl_gaps_us=pack_us(all_gaps), token_times_s=bins.tolist(), token_counts=counts.tolist(),
        token_counts_exact=True,
    )


def timed(fn, n: int = 3):  # noqa: ANN001, ANN201
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best * 1000.0


def bench_trace(gpus: int, num_requests: int, mean_tokens: int) -> None:
    print(f"== one-hour configuration: {gpus} GPUs at 10 Hz (counter 1 Hz), 7,200 batch samples, "
          f"{num_requests:,} requests x ~{mean_tokens} tokens ==")
    trace = hour_trace(gpus, num_requests, mean_tokens)
    data, enc_ms = timed(lambda: encode_trace(trace), 1)
    gaps = len(trace.itl_gaps_us or b"") // 4
    print(f"  trace on disk: {len(data) / 1e6:.1f} MB (msgpack + gzip), encode {enc_ms:.0f} ms; {gaps:,} ITL gaps")
    back, dec_ms = timed(lambda: decode_trace(data))
    print(f"  decode: {dec_ms:.0f} ms")
    rec, ms = timed(lambda: analyse(back))
    print(f"  analyse (detection + energy + tokens + latency + request rows + gates + timelines): {ms:.0f} ms "
          f"-> {rec.status}, {rec.energy_per_request_j:.1f} J/request")


def bench_report(n_records: int, num_requests: int) -> None:
    from mle_tui.core.measure.analysis import analyse
    from mle_tui.core.records import Manifest
    from mle_tui.core.store import RunStore

    print(f"== report over {n_records:,} full records ({num_requests:,} request rows each) ==")
    tmp = Path(tempfile.mkdtemp())
    try:
        store = RunStore(tmp)
        store.ensure()
        base = analyse(hour_trace(1, num_requests, 50))
        store.write_manifest(Manifest(run_id="bench", created_unix_s=0.0, host="bench", power_source="simulated",
                                      configs=[f"c{i}" for i in range(n_records)]))
        import msgspec

        for i in range(n_records):
            store.write_record(msgspec.structs.replace(base, config_key=f"c{i}",
                                                       energy_per_request_j=random.uniform(1, 100),
                                                       latency_value_s=random.uniform(0.01, 0.2)))
        size = sum(p.stat().st_size for p in store.records_dir.iterdir())
        from mle_tui.tui.cli_report import _load_report

        gc.collect()
        t0 = time.perf_counter()
        _load_report(tmp, "100ms", None)
        dt = time.perf_counter() - t0
        gc.collect()
        tracemalloc.start()  # slows allocation down: a separate pass for memory
        _load_report(tmp, "100ms", None)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"  {size / 1e6:.0f} MB of records: report {dt:.2f} s, peak Python memory {peak / 1e6:.0f} MB "
              f"({peak / size:.2f}x their bytes)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--record-requests", type=int, default=500)
    args = ap.parse_args()
    bench_trace(args.gpus, args.requests, args.tokens)
    bench_report(args.records, args.record_requests)


if __name__ == "__main__":
    main()
