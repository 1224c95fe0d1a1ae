"""Runtime registry. Real runtimes are imported lazily: they pull torch, vLLM or diffusers."""

from __future__ import annotations

from ..errors import InputError
from .base import Runtime

RUNTIMES = ("vllm", "transformers", "diffusers", "sim")


def get_runtime(name: str, source: str = "") -> Runtime:
    """The runtime named by a profile's ``runtime`` field. InputError (FILE part ``source``, the
    profile's path) for an unknown name or a runtime whose packages are missing, naming the
    extra to install."""
    try:
        if name == "sim":
            from .sim import SimRuntime

            return SimRuntime()
        if name == "vllm":
            from .vllm import VllmRuntime

            return VllmRuntime()
        if name == "transformers":
            from .transformers_cb import TransformersRuntime

            return TransformersRuntime()
        if name == "diffusers":
            from .diffusers_rt import DiffusersRuntime

            return DiffusersRuntime()
    except ImportError as exc:
        from ..errors import missing_dependency

        raise missing_dependency(exc, f"the {name} runtime", source) from None
    raise InputError(source, "runtime", f"unknown runtime {name!r} (one of {', '.join(RUNTIMES)})")
