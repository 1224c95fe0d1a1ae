"""GPU validation of the measurement layer (issue 6, items 1, 2 and 6). Needs an NVIDIA GPU.

1. NVML energy counter vs the integral of the 10 Hz instant-power timeline, over 1, 5 and 30 s
   windows (every 1 s and 5 s sub-window of a 30 s window), under idle, a dense bf16 matmul
   load and an inference load (a Llama-3.1-8B-shaped model, dummy weights, batched decode steps).
2. Sampler overhead: throughput of the same inference loop with the 10 Hz sampler on and off,
   interleaved, and the sampler's CPU use.
3. Power limits: set, read back and restore through PowerLimitGuard; the limit after equals before.

Usage (on the GPU node, from the repository root)::

    python tests/gpu/validate_nvml.py --out validation.json [--limit-w 400]

Prints a table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import threading
import time
from pathlib import Path


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _windows(sampler, t0: float, t1: float, width_s: float) -> list[dict]:
    out = []
    t = t0
    while t + width_s <= t1 + 1e-9:
        e_counter = sampler.energy_between(t, t + width_s)
        e_integral = sampler.integral_between(t, t + width_s)
        out.append({"t0_s": t, "width_s": width_s, "counter_j": e_counter, "integral_j": e_integral,
                    "diff_pct": 100.0 * (e_integral - e_counter) / e_counter if e_counter > 0 else None})
        t += width_s
    return out


def _summary(rows: list[dict]) -> dict:
    diffs = [r["diff_pct"] for r in rows if r["diff_pct"] is not None]
    if not diffs:
        return {"n": 0}
    return {"n": len(diffs), "mean_diff_pct": statistics.fmean(diffs),
            "mean_abs_diff_pct": statistics.fmean(abs(d) for d in diffs),
            "max_abs_diff_pct": max(abs(d) for d in diffs),
            "mean_power_w": statistics.fmean(r["counter_j"] / r["width_s"] for r in rows)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="validation.json")
    ap.add_argument("--window-s", type=float, default=30.0)
    ap.add_argument("--limit-w", type=float, default=400.0)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from mle_tui.core.clock import WallClock
    from mle_tui.core.dummy_init import describe, init_dummy_
    from mle_tui.core.power.limits import PowerLimitGuard
    from mle_tui.core.power.nvml import NvmlLimiter, NvmlPowerSource
    from mle_tui.core.measure.sampler import PowerSampler

    dev = torch.device("cuda:0")
    clock = WallClock()
    source = NvmlPowerSource(clock)
    info = source.gpus()[0]
    result: dict = {"gpu": info.name, "power_limit_w": info.power_limit_w, "versions": source.versions(),
                    "torch": torch.__version__, "window_s": args.window_s}
    print(f"GPU {info.name}, limit {info.power_limit_w} W, {source.versions()}", flush=True)

    # ---- loads ------------------------------------------------------------------------
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)

    cfg_path = os.path.join(os.path.dirname(__file__), "..", "..", "core", "data", "models", "llama-3.1-8b.json")
    with open(cfg_path) as f:
        cfg = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    cfg["num_hidden_layers"] = 16  # half the layers: same per-layer kernels, half the memory and set-up time
    with torch.device(dev):
        model = LlamaForCausalLM(LlamaConfig(**cfg)).to(torch.bfloat16)
    init_dummy_(model, seed=0)
    model.eval()
    result["inference_model"] = f"Llama-3.1-8B shape with 16 of 32 layers, dummy weights {describe(0)}"
    batch, ctx_len = 64, 512
    ids = torch.randint(0, cfg["vocab_size"], (batch, ctx_len), device=dev)
    with torch.no_grad():
        out = model(ids, use_cache=True)
    past = out.past_key_values
    step_ids = torch.randint(0, cfg["vocab_size"], (batch, 1), device=dev)

    def decode_steps(n: int) -> None:
        nonlocal past
        with torch.no_grad():
            for _ in range(n):
                o = model(step_ids, past_key_values=past, use_cache=True)
                past = o.past_key_values
                # keep the context length bounded so every step costs the same
                past.crop(ctx_len)
        torch.cuda.synchronize()

    def matmul_steps(n: int) -> None:
        for _ in range(n):
            torch.matmul(a, b)
        torch.cuda.synchronize()

    def run_load(fn, stop: threading.Event) -> None:
        while not stop.is_set():
            fn(20)

    loads = {"idle": None, "matmul_bf16_8192": matmul_steps, "inference_decode_b64": decode_steps}

    # ---- 1. counter vs integral -------------------------------------------------------
    result["counter_vs_integral"] = {}
    for name, fn in loads.items():
        stop = threading.Event()
        th = threading.Thread(target=run_load, args=(fn, stop), daemon=True) if fn else None
        if th:
            th.start()
            time.sleep(3.0)  # reach a steady load before the window
        sampler = PowerSampler(source, [0], clock, period_s=0.1)
        sampler.start()
        time.sleep(0.5)
        t0 = clock.now_s()
        time.sleep(args.window_s)
        t1 = clock.now_s()
        time.sleep(0.3)
        sampler.stop()
        stop.set()
        if th:
            th.join()
        per = {}
        for w in (1.0, 5.0, args.window_s):
            rows = _windows(sampler, t0, t1, w)
            per[f"{w:g}s"] = _summary(rows)
        result["counter_vs_integral"][name] = per
        print(f"[counter vs integral] {name}: " + ", ".join(
            f"{k}: mean {v.get('mean_diff_pct', float('nan')):+.2f}% max|d| {v.get('max_abs_diff_pct', float('nan')):.2f}% "
            f"({v.get('mean_power_w', float('nan')):.0f} W, n={v['n']})" for k, v in per.items()), flush=True)

    # ---- 2. sampler overhead ----------------------------------------------------------
    steps = 200
    decode_steps(20)  # warm
    runs = []
    for rep in range(args.reps):
        for on in (False, True) if rep % 2 == 0 else (True, False):
            sampler = PowerSampler(source, [0], clock, period_s=0.1) if on else None
            if sampler:
                sampler.start()
            c0, t0 = _cpu_s(), time.perf_counter()
            decode_steps(steps)
            dt = time.perf_counter() - t0
            c1 = _cpu_s()
            if sampler:
                sampler.stop()
            runs.append({"sampler": on, "tokens_per_s": steps * batch / dt, "cpu_s": c1 - c0, "wall_s": dt})
            print(f"[overhead] rep {rep} sampler={'on ' if on else 'off'} {steps * batch / dt:,.0f} tok/s", flush=True)
    on_tps = statistics.fmean(r["tokens_per_s"] for r in runs if r["sampler"])
    off_tps = statistics.fmean(r["tokens_per_s"] for r in runs if not r["sampler"])
    # Sampler CPU alone, GPU idle, main thread asleep.
    sampler = PowerSampler(source, [0], clock, period_s=0.1)
    c0, t0 = _cpu_s(), time.perf_counter()
    sampler.start()
    time.sleep(10.0)
    sampler.stop()
    cpu_frac = (_cpu_s() - c0) / (time.perf_counter() - t0)
    result["sampler_overhead"] = {"runs": runs, "throughput_ratio_on_over_off": on_tps / off_tps,
                                  "on_tokens_per_s": on_tps, "off_tokens_per_s": off_tps,
                                  "sampler_cpu_fraction_of_one_core": cpu_frac,
                                  "samples_in_10s": len(sampler)}
    print(f"[overhead] throughput on/off = {on_tps / off_tps:.4f}; sampler CPU {100 * cpu_frac:.2f}% of a core", flush=True)

    # ---- 3. power limit set / read back / restore -------------------------------------
    limiter = NvmlLimiter()
    before = limiter.get_limit_w(0)
    state = Path(os.environ.get("XDG_STATE_HOME", "/tmp")) / "validate_power_limits.json"
    with PowerLimitGuard(limiter, [0], args.limit_w, state_path=state, handle_signals=True) as guard:
        enforced = limiter.get_limit_w(0)
        guard_enforced = guard.enforced_w
    after = limiter.get_limit_w(0)
    result["power_limit"] = {"before_w": before, "requested_w": args.limit_w, "enforced_w": enforced,
                             "guard_enforced_w": guard_enforced, "after_w": after, "restored": abs(after - before) < 1.0}
    print(f"[power limit] before {before} W, set {args.limit_w} W -> read back {enforced} W, after {after} W", flush=True)

    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
