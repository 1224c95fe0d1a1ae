"""Benchmark (a script, not a test): the run screen fed one hour of 10 Hz samples.

    python tests/bench_tui.py [--gpus 2] [--redraws 20]

Feeds 36,000 power samples and 36,000 batch samples (plus steady updates, progress and a log
line every 10 s) into the run screen's state the way the app does, redrawing at 4 Hz of run
time, and prints: the cost of a chart redraw (both time charts rebuilt on the braille canvas) and of a whole
screen update, at 1, 10 and 60 minutes of data, for 80x24 and 160x48; the Python memory held
by the live state (tracemalloc) and the process RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mle_tui.core.config import Config  # noqa: E402
from mle_tui.core.events import (BatchSampleEvent, ConfigStarted, LogLine, PowerSample,  # noqa: E402
                                 RequestProgress, RunStarted, SteadyUpdate)
from mle_tui.tui.app import MleApp  # noqa: E402
from mle_tui.tui.charts import BatchChart, PowerChart  # noqa: E402
from mle_tui.tui.live import LiveState  # noqa: E402
from mle_tui.tui.screen_run import RunScreen  # noqa: E402
from tui_fakes import FrozenClock, no_gpu_probe  # noqa: E402

HZ = 10
HOUR_S = 3600


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def hour_of_events(gpus: int, seed: int = 0):
    """One configuration, an hour long: ramp-up, a long saturated window, a ramp-down."""
    rng = random.Random(seed)
    B = 256
    cfg = Config(max_num_seqs=B, power_limit_w=500)
    yield RunStarted(run_id="bench", run_dir="/tmp/bench", configs=[cfg.key(), "next"], skipped=[],
                     power_source="simulated", simulated=True)
    n = HOUR_S * HZ
    yield ConfigStarted(key=cfg.key(), index=0, total=2, config=cfg, label=cfg.label(), num_requests=100_000,
                        power_limit_w=[500.0] * gpus)
    steady_t0 = None
    for i in range(n):
        t = i / HZ
        ramp = min(1.0, t / 60.0) * min(1.0, max(0.0, (HOUR_S - t) / 120.0))
        running = B * ramp
        waiting = max(0.0, 50_000 * (1 - t / (HOUR_S - 120)))
        per = [80 + 400 * ramp + rng.gauss(0, 15) for _ in range(gpus)]
        yield PowerSample(t_s=t, per_gpu_w=per, total_w=sum(per), memory_w=45.0 * gpus + 40 * ramp * gpus,
                          average_w=sum(per))
        yield BatchSampleEvent(t_s=t, running=running, waiting=waiting)
        if steady_t0 is None and running >= B - 1:
            steady_t0 = t
        if steady_t0 is not None and i % HZ == 0:
            end = t if running < B - 1 else None
            yield SteadyUpdate(start_s=steady_t0, end_s=end, mean_batch=B - 0.3, energy_per_token_j=0.12,
                               gates={"window_length": t - steady_t0 > 20, "mean_batch": True})
        if i % HZ == 0:
            yield RequestProgress(done=int(100_000 * t / HOUR_S), total=100_000, t_s=t)
        if i % (10 * HZ) == 0:
            yield LogLine(line=f"t={t:.0f}s running={running:.0f} waiting={waiting:.0f}")


async def bench_size(size: tuple[int, int], gpus: int, redraws: int, trace: bool) -> dict:
    app = MleApp(profiles=[], gpu_probe=no_gpu_probe, now_s=FrozenClock(), cursor_blink=False,
                 runs_root=Path("/tmp/bench-runs"))
    out: dict = {"size": f"{size[0]}x{size[1]}"}
    async with app.run_test(size=size) as pilot:
        if trace:
            tracemalloc.start()
            base_mem = tracemalloc.get_traced_memory()[0]
        live = LiveState(now_s=app.now_s)
        app.live = live
        screen = RunScreen(live, tick_s=3600)  # the benchmark drives redraws itself
        await app.push_screen(screen)
        await pilot.pause()
        power, batch = screen.query_one("#power", PowerChart), screen.query_one("#batch", BatchChart)
        checkpoints = {60: "1 min", 600: "10 min", 3600: "60 min"}
        apply_s = 0.0
        per_tick = HZ // 4 * 2  # events of 0.25 s of run time: power + batch at 10 Hz (rounded)
        pending = []
        events = hour_of_events(gpus)
        t_run = 0.0
        ticks = 0
        for ev in events:
            pending.append(ev)
            if isinstance(ev, BatchSampleEvent):
                t_run = ev.t_s
            if len(pending) < per_tick and not (isinstance(ev, BatchSampleEvent) and int(ev.t_s) in checkpoints
                                                and ev.t_s == int(ev.t_s)):
                continue
            t0 = time.perf_counter()
            live.apply_all(pending)
            apply_s += time.perf_counter() - t0
            pending = []
            ticks += 1
            if ticks % 240 == 0:  # a redraw every minute of run time while feeding
                screen.sync(force=True)
                await pilot.pause(0)
            key = int(t_run) if t_run == int(t_run) else None
            if key in checkpoints:
                label = checkpoints.pop(key)
                if not trace:
                    out[label] = await measure(pilot, screen, power, batch, redraws)
        live.apply_all(pending)
        if not trace and "60 min" not in out:
            out["60 min"] = await measure(pilot, screen, power, batch, redraws)
        if trace:
            screen.sync(force=True)
            await pilot.pause(0)
            cur, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out["traced_mib"] = (cur - base_mem) / 2**20
            out["traced_peak_mib"] = (peak - base_mem) / 2**20
        out["events"] = live.events_applied
        out["apply_us_per_event"] = apply_s / max(1, live.events_applied) * 1e6
        out["points_kept"] = (len(live.power), len(live.batch))
        out["series_kib"] = (live.power.nbytes() + live.batch.nbytes()) / 1024
        out["rss_mib"] = rss_mib()
    return out


async def measure(pilot, screen, power, batch, redraws: int) -> dict:
    """Force ``redraws`` chart rebuilds; time the plotext builds and the whole screen update
    (timed without tracemalloc, which slows Python several-fold)."""
    chart_ms, frame_ms = [], []
    for _ in range(redraws):
        b0 = power.build_s_total + batch.build_s_total
        t0 = time.perf_counter()
        screen.live.chart_version += 1
        screen.sync(force=True)
        await pilot.pause(0)  # the compositor renders the dirty widgets
        frame_ms.append((time.perf_counter() - t0) * 1e3)
        chart_ms.append((power.build_s_total + batch.build_s_total - b0) * 1e3)
    return {"chart_ms_median": statistics.median(chart_ms), "chart_ms_max": max(chart_ms),
            "frame_ms_median": statistics.median(frame_ms)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--redraws", type=int, default=20)
    args = ap.parse_args()
    print(f"run screen, one hour of {HZ} Hz samples ({HOUR_S * HZ:,} power + {HOUR_S * HZ:,} batch), "
          f"{args.gpus} GPUs, {args.redraws} forced redraws per point")
    for size in ((80, 24), (160, 48)):
        r = asyncio.run(bench_size(size, args.gpus, args.redraws, trace=False))
        r.update({k: v for k, v in asyncio.run(bench_size(size, args.gpus, 0, trace=True)).items()
                  if k.startswith("traced")})
        print(f"\n{r['size']}: {r['events']:,} events folded, {r['apply_us_per_event']:.1f} µs/event; "
              f"points kept power/batch {r['points_kept'][0]}/{r['points_kept'][1]} "
              f"({r['series_kib']:.0f} KiB of buffers)")
        for label in ("1 min", "10 min", "60 min"):
            m = r.get(label)
            if m:
                print(f"  after {label:>6}: chart redraw (2 chart builds) {m['chart_ms_median']:.1f} ms median, "
                      f"{m['chart_ms_max']:.1f} ms max; whole screen update {m['frame_ms_median']:.1f} ms")
        print(f"  memory: live state + screen {r['traced_mib']:.2f} MiB traced "
              f"(peak {r['traced_peak_mib']:.2f} MiB), process RSS {r['rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
