"""Run (or resume) a sweep within a wall-clock budget, stopping only between configurations.

For leased GPU machines whose commands are limited in time: the sweep stops cleanly before a
configuration that would not fit in what is left (estimated from the ones seen: the slowest
run so far without its server start, plus the longest server start seen, or --server-start-s
before any, when the next configuration needs a new server), and the next
call resumes it into the same directory.

    python tests/gpu/run_budgeted.py PROFILE OUT --budget-s 540 [--server-start-s 120] [--gpus I,J]

--gpus (as on `mle-tui run`) gives two sweeps their own GPUs of one node, side by side.

A file OUT.drain (``h200.sh drain NAME``) stops the sweep after the configuration running now,
as the budget does: to hand its GPU on, e.g. to resume the directory over two Ray nodes once
the GPU beside it is free. It is removed when a call starts.

Exit status: 0 all configurations done, 3 stopped for the budget (run again to resume),
1 a configuration failed or the runner crashed, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from budget import StartEstimate, log_wall  # noqa: E402
from mle_tui.core.errors import InputError
from mle_tui.core.events import ConfigFinished, ConfigStarted, LogLine
from mle_tui.core.profile import load_profile
from mle_tui.core.runner import SweepRunner
from mle_tui.core.runtimes.vllm import server_key


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("out")
    ap.add_argument("--budget-s", type=float, default=540.0)
    ap.add_argument("--server-start-s", type=float, default=120.0)
    ap.add_argument("--gpus", metavar="I,J", help="GPU indices for this sweep (overrides gpu.indices)")
    args = ap.parse_args()
    t0 = time.monotonic()
    drain = Path(args.out + ".drain")
    drain.unlink(missing_ok=True)
    try:
        profile = load_profile(args.profile)
        if args.gpus is not None:
            from mle_tui.tui.cli import _with_gpus

            profile = _with_gpus(profile, args.gpus)
    except InputError as exc:
        print(f"mle-tui: {exc.line()}", file=sys.stderr)
        return 2
    runner: SweepRunner | None = None
    state = {"cfg": None, "stopped_for_budget": False}
    estimate = StartEstimate(args.server_start_s)

    def listener(e) -> None:  # noqa: ANN001
        now = time.monotonic()
        if isinstance(e, ConfigStarted):
            state["cfg"] = e.config
            estimate.started(None, now)
            print(f"[{now - t0:6.0f} s] start {e.key} ({e.index + 1}/{e.total})", flush=True)
        elif isinstance(e, LogLine) and ("ready after" in e.line or "reusing" in e.line):
            print(f"[{now - t0:6.0f} s] {e.line}", flush=True)
            if "ready after" in e.line:
                estimate.ready(None, now)
        elif isinstance(e, ConfigFinished):
            took = estimate.finished(None, now) or 0.0
            epr = "-" if e.energy_per_request_j is None else f"{e.energy_per_request_j:.2f} J/req"
            print(f"[{now - t0:6.0f} s] {e.key}: {e.status} {epr} in {took:.0f} s {e.reasons[:2]}", flush=True)
            assert runner is not None
            pending = [c for c in runner.pending() if c.key() != e.key]
            if pending:
                nxt = pending[0]
                cur = state["cfg"]
                # adaptive: the next configuration is chosen from this one's result; assume a new server
                new = runner.strategy == "adaptive" or cur is None or server_key(nxt, profile) != server_key(cur, profile)
                need = estimate.need_s(new)
                if drain.exists():
                    print(f"[{now - t0:6.0f} s] stopping on {drain.name} before the next configuration", flush=True)
                    state["stopped_for_budget"] = True
                    runner.request_stop()
                elif now - t0 + need > args.budget_s:
                    # adaptive: the search picks its next point when it starts it; pending() is grid order
                    what = "the search's next configuration" if runner.strategy == "adaptive" else nxt.key()
                    print(f"[{now - t0:6.0f} s] stopping for the budget before {what} (needs ~{need:.0f} s)",
                          flush=True)
                    state["stopped_for_budget"] = True
                    runner.request_stop()

    runner = SweepRunner(profile, Path(args.out), profile_path=args.profile, listener=listener)
    try:
        summary = runner.run()
    except InputError as exc:
        print(f"mle-tui: {exc.line()}", file=sys.stderr)
        return 2
    print(f"summary: {summary}", flush=True)
    log_wall(args.out, "local", time.monotonic() - t0, summary)  # this call's (a resumed sweep: sum the lines)
    plan = getattr(runner, "plan", None)
    if plan is not None and plan.strategy == "adaptive":
        # (a stop for the budget after the search's last configuration costs one more short call:
        # the resumed search ends at once, and a server-reuse check still due runs then)
        for line in plan.finish(summary.stopped)[-1:]:
            print(line, flush=True)
    if state["stopped_for_budget"]:
        return 3
    return 1 if summary.failed or summary.stopped else 0


if __name__ == "__main__":
    sys.exit(main())
