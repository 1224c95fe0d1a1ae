"""Import Ray (the optional extra) with a one-line error when it is missing, and keep it
importable beside zeus: zeus installs ``amdsmi``, whose import raises KeyError (not ImportError)
on a node without ROCm, and Ray 2.60 imports it at ``import ray`` in every process it starts.
When that import is broken, ``amdsmi`` is made an ImportError here and, through PYTHONPATH, in
the Ray processes started from this one (a local cluster); on an existing cluster the same
PYTHONPATH goes before ``ray start`` (:func:`shim_path`, README)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError

SHIM_DIR = Path(__file__).resolve().parent / "amdsmi_shim"


def amdsmi_broken() -> bool:
    """True when ``import amdsmi`` fails with something other than ImportError."""
    if "amdsmi" in sys.modules:
        return sys.modules["amdsmi"] is None and str(SHIM_DIR) in sys.path
    try:
        import amdsmi  # noqa: F401
    except ImportError:
        return False
    except Exception:  # noqa: BLE001 - KeyError('libamd_smi.so') and friends
        sys.modules.pop("amdsmi", None)
        for name in [m for m in sys.modules if m.startswith("amdsmi.")]:
            sys.modules.pop(name, None)
        return True
    return False


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
