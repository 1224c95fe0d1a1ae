"""The amdsmi guard: Ray 2.60 imports ``amdsmi`` at ``import ray`` in every process, and zeus's
``amdsmi`` raises KeyError (not ImportError) on a node without ROCm. Children that may import
Ray (vLLM servers, Ray's own processes) get a stand-in that is an ImportError."""

from __future__ import annotations

import os
import subprocess
import sys

from mle_tui.core.cluster import ray_env


def test_child_env_puts_the_stand_in_first_only_where_amdsmi_is_broken(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(ray_env, "_BROKEN", True)
    env = ray_env.child_env({"PYTHONPATH": "/a"})
    assert env["PYTHONPATH"].split(os.pathsep) == [ray_env.shim_path(), "/a"]
    assert ray_env.child_env(env) == env  # once
    monkeypatch.setattr(ray_env, "_BROKEN", False)
    assert ray_env.child_env({"PYTHONPATH": "/a"}) == {"PYTHONPATH": "/a"}


def test_the_stand_in_is_an_import_error_in_a_child() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ray_env.shim_path(), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", "import amdsmi"], env=env, capture_output=True, text=True)
    assert out.returncode == 1 and "ImportError: amdsmi is installed without libamd_smi.so" in out.stderr
