"""How fast a stop is obeyed while requests are prepared: load the packaged ShareGPT workload
(decode + token counting) and set the cancel event after DELAY seconds; prints the time from
the cancel to Cancelled. Not a test (speed figures go here, not in timed asserts).

    PYTHONPATH=... python3 tests/bench_cancel.py [DELAY_S ...]
"""

from __future__ import annotations

import sys
import threading
import time

from mle_tui.core.datasets import load_requests
from mle_tui.core.errors import Cancelled
from mle_tui.core.profile import decode_profile

PROFILE = """
name = "b"
task = "chat"
runtime = "sim"
[model]
id = "m"
[dataset]
name = "sharegpt"
num_requests = 20000
[sweep]
max_num_seqs = 8
"""


def main() -> None:
    profile = decode_profile(PROFILE)
    t0 = time.perf_counter()
    n = len(load_requests(profile))
    print(f"full load: {n} requests in {time.perf_counter() - t0:.2f} s")
    for delay in [float(x) for x in sys.argv[1:]] or [0.2, 1.0, 3.0]:
        ev = threading.Event()
        when: list[float] = []
        threading.Timer(delay, lambda: (when.append(time.perf_counter()), ev.set())).start()
        try:
            load_requests(profile, cancel=ev)
            print(f"cancel after {delay:.1f} s: finished before the cancel")
        except Cancelled:
            print(f"cancel after {delay:.1f} s: obeyed in {(time.perf_counter() - when[0]) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
