"""Start-up figures: ``mle-tui`` to its first screen on a pseudo-terminal (80x24), and the import
time of the app's modules. Goal (issue 15): first screen <= 1.5 s. Prints figures; asserts nothing.

    PYTHONPATH=... python3 tests/bench_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from ptyapp import PtyApp  # noqa: E402

#: On the setup screen once it is drawn (its title bar).
FIRST_SCREEN = "mle-tui · setup"
HEAVY = ("zeus", "numpy", "torch", "vllm", "httpx", "prometheus_client", "plotext", "datasets", "transformers")


def first_screen_s(runs: int) -> list[float]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"MLE_TUI_STATE_DIR": str(Path(tmp) / "state")}
        for _ in range(runs):
            app = PtyApp([], cwd=Path(tmp), env=env)
            try:
                out.append(app.wait_for(FIRST_SCREEN, 60))
                app.send("\x11")  # ctrl+q
                app.wait_exit(10)
            finally:
                app.kill()
    return out


def import_figures() -> tuple[float, list[str], list[tuple[int, str]]]:
    """Cumulative import time of what the first screen imports (s), heavy modules among them,
    and the ten largest cumulative entries (µs, module)."""
    code = ("import sys, mle_tui.tui.cli, mle_tui.tui.app, mle_tui.tui.screen_setup; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    rows = []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m[2]), len(m[3]), m[4]))
    total = sum(c for c, depth, _ in rows if depth == 1) / 1e6
    top = sorted(((c, name) for c, _, name in rows), reverse=True)[:10]
    return total, p.stdout.split(), top


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    total, heavy, top = import_figures()
    print(f"imports of the first screen: {total:.3f} s (cumulative, -X importtime)")
    print(f"heavy modules imported before the first screen: {', '.join(heavy) or 'none'}")
    for c, name in top:
        print(f"  {c / 1e3:8.1f} ms  {name}")
    times = first_screen_s(args.runs)
    print(f"time to first screen (pty 80x24, {len(times)} runs): median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f} s, max {max(times):.2f} s (goal <= 1.5 s)")


if __name__ == "__main__":
    t0 = time.monotonic()
    main()
    print(f"(bench took {time.monotonic() - t0:.1f} s)")
