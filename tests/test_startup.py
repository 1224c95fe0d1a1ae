"""The first screen imports no heavy module (numpy, zeus, the runtimes, the HTTP client): the
start-up figures themselves are in tests/bench_startup.py. (pynvml is not in the list: the GPU
probe imports it in a worker once the screen is up.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = ("numpy", "zeus", "torch", "vllm", "httpx", "prometheus_client", "plotext",
         "mle_tui.core.runner", "mle_tui.core.runtimes", "mle_tui.core.datasets", "mle_tui.tui.series")


def test_first_screen_imports_nothing_heavy(tmp_path):
    code = textwrap.dedent(f"""
        import asyncio, sys
        from mle_tui.tui.app import MleApp
        from mle_tui.tui.screen_setup import SetupScreen
        async def main():
            app = MleApp(cursor_blink=False)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                assert isinstance(app.screen, SetupScreen)
                print(" ".join(m for m in {HEAVY!r} if m in sys.modules))
        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={"MLE_TUI_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin",
                              **{k: v for k, v in __import__("os").environ.items() if k == "PYTHONPATH"}})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []
