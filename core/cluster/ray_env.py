"""Import Ray (the optional extra) with a one-line error when it is missing, and keep it
importable beside zeus: zeus installs ``amdsmi``, whose import raises KeyError (not ImportError)
on a node without ROCm, and Ray 2.60 imports it at ``import ray`` in every process it starts.
When that import is broken, ``amdsmi`` is made an ImportError here and, through PYTHONPATH, in
the Ray processes started from this one (a local cluster); on an existing cluster the same
PYTHONPATH goes before ``ray start`` (:func:`shim_path`, README)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

from ..errors import InputError

SHIM_DIR = Path(__file__).resolve().parent / "amdsmi_shim"


_BROKEN: bool | None = None


def amdsmi_broken() -> bool:
    """True when ``import amdsmi`` fails with something other than ImportError (checked once;
    what the failing import prints is swallowed)."""
    global _BROKEN
    if _BROKEN is not None:
        return _BROKEN
    if "amdsmi" in sys.modules:
        _BROKEN = sys.modules["amdsmi"] is None
        return _BROKEN
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            import amdsmi  # noqa: F401
    except ImportError:
        _BROKEN = False
    except Exception:  # noqa: BLE001 - KeyError('libamd_smi.so') and friends
        for name in [m for m in sys.modules if m == "amdsmi" or m.startswith("amdsmi.")]:
            sys.modules.pop(name, None)
        _BROKEN = True
    else:
        _BROKEN = False
    return _BROKEN


def child_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a child process that may import Ray (vLLM does, at every server start, where
    Ray is installed): with the stand-in first on its PYTHONPATH where ``amdsmi`` is broken."""
    if not amdsmi_broken():
        return env
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SHIM_DIR)]
    return {**env, "PYTHONPATH": os.pathsep.join([str(SHIM_DIR), *parts])}


def shim_path() -> str:
    """The directory to put on PYTHONPATH of Ray processes where ``amdsmi`` is broken."""
    return str(SHIM_DIR)


def import_ray(source: str = "", field: str = "cluster.ray_address"):  # noqa: ANN201
    """The ``ray`` module; InputError naming the extra when it is not installed."""
    if amdsmi_broken():
        sys.modules["amdsmi"] = None  # type: ignore[assignment]
        if str(SHIM_DIR) not in sys.path:
            sys.path.append(str(SHIM_DIR))
        parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if str(SHIM_DIR) not in parts:
            os.environ["PYTHONPATH"] = os.pathsep.join([str(SHIM_DIR), *parts])
    try:
        import ray
    except ImportError as exc:
        raise InputError(source, field, f"Ray is not installed ({exc}); pip install 'mle-tui[ray]'") from None
    return ray


def error_tail(exc: BaseException, limit: int = 300) -> str:
    """The error a remote traceback ends with (Ray's text starts with its own frames)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
