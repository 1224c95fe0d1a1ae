"""Import contract: core/ is the measurement engine and never imports Textual or the UI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"
FORBIDDEN = ("textual", "textual_plotext", "plotext", "mle_tui.tui")


def _imports(path: Path, root: Path = CORE) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against mle_tui.core.<subpackage>
                pkg = ["mle_tui", "core", *path.relative_to(root).parent.parts]
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                out.append(".".join([*base, node.module] if node.module else base))
            elif node.module:
                out.append(node.module)
    return out


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_ui(path: Path) -> None:
    bad = [m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{path.relative_to(CORE.parent)} imports {bad}"


def test_the_contract_catches_ui_imports(tmp_path: Path) -> None:
    root = tmp_path / "core"
    probe = root / "sim" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from ...tui import app\nimport textual.widgets\nfrom ..records import Record\n")
    found = _imports(probe, root)
    assert found == ["mle_tui.tui", "textual.widgets", "mle_tui.core.records"]


PURE = ("analysis.py", "trace.py", "energy.py", "steady.py", "timelines.py", "accounting.py", "latency.py",
        "power_trace.py", "neighbours.py")
NOT_FROM_ANALYSIS = ("mle_tui.core.runner", "mle_tui.core.config_run", "mle_tui.core.runtimes",
                     "mle_tui.core.power", "mle_tui.core.gpu_setup", "mle_tui.core.store", "mle_tui.tui",
                     "mle_tui.core.measure.sampler", "mle_tui.core.measure.live", "threading", "time",
                     "textual")


@pytest.mark.parametrize("name", PURE)
def test_analysis_imports_no_runner_runtime_power_source_clock_or_ui(name: str) -> None:
    """Data flows one way: Trace -> Analysis (pure) -> Record. The analysis and what it reads
    import neither the runner, the runtimes, the power sources, the store, threads, clocks nor
    the UI."""
    path = CORE / "measure" / name
    bad = [m for m in _imports(path) if any(m == f or m.startswith(f + ".") for f in NOT_FROM_ANALYSIS)]
    assert not bad, f"{path.relative_to(CORE.parent)} imports {bad}"
