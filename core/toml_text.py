"""TOML text of resolved profiles, written by ``tomli-w`` (a dependency). ``None`` values are left
out (TOML has no null); ``inf`` (``load.request_rate``) is written as TOML's ``inf``."""

from __future__ import annotations

from typing import Any

import msgspec
import tomli_w


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


def dumps(data: dict[str, Any]) -> str:
    """TOML text of a nested dict (``None`` values left out)."""
    return tomli_w.dumps(_drop_none(data))


def struct_to_toml(obj: msgspec.Struct) -> str:
    """TOML text of a msgspec Struct (e.g. a resolved Profile)."""
    return dumps(msgspec.to_builtins(obj))
