"""Benchmark (a script, not a test): the power sampler's CPU cost (simulated source, with and
without an injected 4 ms CPU cost per counter read, and NVML where present) and the cost of
steady-state detection and accounting on a 1-hour trace.

    python tests/bench_core.py [--seconds 10] [--no-nvml]

Prints figures; asserts nothing. The sampler's cost is process CPU time per second of
sampling on the wall clock, minus the same process idling for as long (baseline).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from mle_tui.core.measure import accounting as acc
from mle_tui.core.clock import VirtualClock, WallClock
from mle_tui.core.measure.latency import request_row, summarise
from mle_tui.core.pareto import Point, frontier
from mle_tui.core.power.base import PowerSource
from mle_tui.core.power.simulated import SimulatedPowerSource
from mle_tui.core.measure.sampler import PowerSampler
from mle_tui.core.measure.steady import RequestCountDetector, SaturationDetector, detect_offline, evaluate_gates


def cpu_cost(source: PowerSource, indices: list[int], clock: WallClock, seconds: float,
             mark_every_s: float | None = None) -> tuple[float, float, int, int]:
    """(CPU fraction of one core, CPU ms per power reading, power readings, counter reads) of
    the sampler (power fields at 10 Hz, counter at 1 Hz; plus a mark every ``mark_every_s``)."""
    c0, w0 = time.process_time(), time.perf_counter()
    time.sleep(seconds)
    idle = (time.process_time() - c0) / (time.perf_counter() - w0)
    s = PowerSampler(source, indices, clock, period_s=0.1)
    c0, w0 = time.process_time(), time.perf_counter()
    s.start()
    if mark_every_s:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            time.sleep(min(mark_every_s, max(0.0, end - time.perf_counter())))
            s.mark_now()
    else:
        time.sleep(seconds)
    s.stop()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    frac = max(0.0, cpu / wall - idle)
    return frac, frac * wall / max(1, s.num_readings) * 1000.0, s.num_readings, s.num_counter_reads


def read_latency_ms(source: PowerSource, indices: list[int], n: int = 200) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        source.read(indices)
    return (time.perf_counter() - t0) / n * 1000.0


def timed(label: str, fn: Callable[[], object], rows: list[tuple[str, float]]) -> object:
    t0 = time.perf_counter()
    out = fn()
    rows.append((label, (time.perf_counter() - t0) * 1000.0))
    return out


def bench_sampler(seconds: float, nvml: bool) -> None:
    print(f"== power sampler (power fields 10 Hz, counter 1 Hz), wall clock, {seconds:g} s each ==")
    for n, cost_s, marks in ((1, 0.0, None), (8, 0.0, None), (1, 0.004, None), (8, 0.004, None), (1, 0.004, 1.0)):
        clock = WallClock()
        src = SimulatedPowerSource(clock, n, energy_read_cpu_s=cost_s)
        frac, per, k, kc = cpu_cost(src, list(range(n)), clock, seconds, marks)
        what = f"{cost_s * 1000:g} ms CPU per counter read" + (f", a mark every {marks:g} s" if marks else "")
        print(f"simulated, {n} GPU(s), {what}: {frac * 100:.3f} % of one core = {frac * 100 / n:.3f} % per GPU "
              f"({k} power readings, {kc} counter reads; one full read {read_latency_ms(src, list(range(n)), 50):.3f} ms)")
    if not nvml:
        return
    try:
        from mle_tui.core.power.nvml import NvmlPowerSource

        clock = WallClock()
        src_nvml = NvmlPowerSource(clock)
    except Exception as exc:  # noqa: BLE001 - no GPU here: say so
        print(f"NVML: not available ({' '.join(str(exc).split())[:160]})")
        return
    gpus = src_nvml.gpus()
    for n in sorted({1, len(gpus)}):
        idx = list(range(n))
        frac, per, k, kc = cpu_cost(src_nvml, idx, clock, seconds)
        print(f"NVML ({gpus[0].name}), {n} GPU(s): {frac * 100:.3f} % of one core = {frac * 100 / n:.3f} % per GPU "
              f"({k} power readings, {kc} counter reads; one full read {read_latency_ms(src_nvml, idx, 50):.3f} ms wall)")


def bench_edges(seeds: int = 25, batches: int = 8) -> None:
    """Energy per diffusion batch vs the simulated truth (virtual clock): edges from marks."""
    from mle_tui.core.sim.diffusion import DiffusionCostModel, DiffusionSim

    print(f"== energy per batch vs simulated truth, {seeds} seeds x {batches} batches, counter 1 Hz + marks ==")
    for batch_s in (2.0, 5.0, 30.0):
        errs = []
        for seed in range(seeds):
            clock = VirtualClock()
            src = SimulatedPowerSource(clock, 1, seed=seed)
            s = PowerSampler(src, [0], clock)
            s.start()
            clock.advance_to(random.Random(seed).uniform(0.3, 1.7))
            done: list = []
            cost = DiffusionCostModel(step_base_s=batch_s / 25, per_mpix_s=0.0, warmup_factor=1.0)
            DiffusionSim(batch_size=4, num_inference_steps=25, width=768, height=768, batches=batches,
                         warmup_batches=0, clock=clock, gpus=src.sim_gpus([0]), cost=cost,
                         on_batch_done=done.append, mark=s.mark_now).run()
            clock.advance_to(clock.now_s() + 0.3)
            for b in done:
                truth = src.true_energy_j([0], b.start_s, b.end_s)
                errs.append(abs(s.energy_between(b.start_s, b.end_s) - truth) / truth * 100)
            s.stop()
        errs.sort()
        print(f"  {batch_s:4.0f} s batches: mean |error| {sum(errs) / len(errs):.3f} %, "
              f"p95 {errs[int(0.95 * len(errs))]:.3f} %, max {errs[-1]:.3f} %")


def bench_hour(num_requests: int, mean_tokens: int) -> None:
    print(f"== 1-hour trace: 36,000 power samples (10 Hz), 7,200 batch samples (2 Hz), "
          f"{num_requests:,} requests x ~{mean_tokens} tokens ==")
    rng = random.Random(0)
    B = 64
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 1, seed=0)
    sampler = PowerSampler(src, [0], clock)
    # Server trace: ramp-up 60 s, saturated until 3,480 s, drain to 3,600 s.
    bt, run, wait = [], [], []
    for k in range(7200):
        t = k * 0.5
        if t < 60:
            r, w = min(B - 2, int(B * t / 60)), 5000
        elif t < 3480:
            r, w = B - rng.randint(0, 1), max(1, int(5000 * (3480 - t) / 3420))
        else:
            r, w = max(0, int((B - 2) * (3600 - t) / 120)), 0
        bt.append(t)
        run.append(float(r))
        wait.append(float(w))

    def sample_hour() -> None:
        sampler.start()
        for t, r in zip(bt, run):
            src.gpu(0).set_load(r / B)
            clock.advance_to(t + 0.5)
        sampler.stop()

    rows: list[tuple[str, float]] = []
    timed("sample 1 h on the virtual clock (36,000 reads, sim)", sample_hour, rows)
    # Requests: sends at t=0, first tokens and finishes spread over the hour.
    chunks: list[tuple[float, list[float]]] = []
    for i in range(num_requests):
        start = min(3500.0, i * 3500.0 / num_requests) + rng.uniform(0, 1)
        n = max(2, int(rng.expovariate(1 / mean_tokens)))
        step = rng.uniform(0.02, 0.06)
        chunks.append((start, [start + 0.2 + j * step for j in range(n)]))
    first = [c[1][0] for c in chunks]
    finish = [c[1][-1] for c in chunks]

    def online_sat() -> object:
        d = SaturationDetector(B)
        for t, r, w in zip(bt, run, wait):
            d.feed(t, r, w)
        return d.finish()

    def online_rc() -> object:
        d = RequestCountDetector(B, num_requests)
        for t, kind in sorted([(t, 0) for t in first] + [(t, 1) for t in finish]):
            d.first_token(t) if kind == 0 else d.finished(t)
        return d.finish()

    win = timed("steady: saturation, online (7,200 feeds)", online_sat, rows)
    timed("steady: saturation, offline", lambda: detect_offline("saturation", B, bt, run, wait, [], []), rows)
    timed("steady: request-count, online (20,000 events, incl. sort)", online_rc, rows)
    timed("steady: request-count, offline",
          lambda: detect_offline("request-count", B, [], [], [], first, finish), rows)
    assert win is not None and win.end_s is not None  # type: ignore[union-attr]
    t0, t1 = win.start_s, win.end_s  # type: ignore[union-attr]
    e = timed("energy: counter window", lambda: sampler.energy_between(t0, t1), rows)
    timed("energy: instant-power integral window", lambda: sampler.integral_between(t0, t1), rows)

    def built() -> tuple[list, list]:
        out_rows, gaps = [], []
        for i, (send, ch) in enumerate(chunks):
            row, g = request_row(id=i, send_s=0.0, chunk_times_s=ch, input_tokens=100, output_tokens=len(ch))
            out_rows.append(row)
            gaps.extend(g)
        return out_rows, gaps

    req_rows, gaps = timed(f"latency: {num_requests:,} request rows", built, rows)  # type: ignore[misc]
    timed(f"latency: summarise ({len(gaps):,} ITL gaps)", lambda: summarise(req_rows, gaps), rows)

    def account() -> None:
        in_win = [r for r in req_rows if r.end_s is not None and t0 <= r.end_s <= t1]
        tokens = sum(r.output_tokens for r in in_win)
        mean_out = sum(r.output_tokens for r in req_rows) / len(req_rows)
        mean_batch = sum(r for t, r in zip(bt, run) if t0 <= t <= t1) / max(1, sum(1 for t in bt if t0 <= t <= t1))
        ept = acc.energy_per_token_j(e, tokens)  # type: ignore[arg-type]
        epr = acc.energy_per_request_llm(e, tokens, mean_out)  # type: ignore[arg-type]
        evaluate_gates(window_s=t1 - t0, mean_batch=mean_batch, max_num_seqs=B, energy_per_token_j=ept,
                       cap_fraction=0.0, min_window_s=20, min_batch_fraction=0.85,
                       max_energy_per_token_j=100, max_cap_fraction=0.3)
        acc.cost_per_1k_usd(epr, 0.12)
        acc.carbon_per_1k_g(epr, 400)
        acc.tdp_estimate_j(700, 1, t1 - t0)

    timed("accounting: eq. 2, gates, cost, carbon, TDP", account, rows)
    timed("record timeline (6,000 points)", lambda: sampler.timeline(6000), rows)
    pts = [Point(key=f"c{i}", latency_s=rng.random(), energy_j=rng.random()) for i in range(1000)]
    timed("pareto frontier (1,000 configurations)", lambda: frontier(pts), rows)
    width = max(len(label) for label, _ in rows)
    for label, ms in rows:
        print(f"  {label:<{width}}  {ms:9.2f} ms")
    core = sum(ms for label, ms in rows if label.startswith(("steady: saturation, online", "energy", "latency",
                                                              "accounting")))
    print(f"  {'detection (online saturation) + energy + latency + accounting':<{width}}  {core:9.2f} ms")
    print(f"  steady window {t0:.1f}..{t1:.1f} s; energy {e / 1e6:.3f} MJ; truth "
          f"{src.true_energy_j([0], t0, t1) / 1e6:.3f} MJ; {len(sampler):,} samples kept")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="sampling time per sampler measurement")
    ap.add_argument("--no-nvml", action="store_true", help="skip the NVML measurement")
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--tokens", type=int, default=200, help="mean output tokens per request")
    args = ap.parse_args()
    bench_sampler(args.seconds, not args.no_nvml)
    bench_edges()
    bench_hour(args.requests, args.tokens)


if __name__ == "__main__":
    main()
