"""A small TOML writer for resolved profiles (msgspec's TOML encoder needs ``tomli_w``, which is
not a dependency). Handles what a profile holds: tables, strings, numbers (incl. inf/nan),
booleans and lists of scalars; ``None`` values are left out."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_scalar(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_scalar(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def dumps(data: dict[str, Any]) -> str:
    """TOML text of a nested dict: scalars first, then one ``[table]`` per nested dict."""
    lines: list[str] = []

    def table(d: dict[str, Any], prefix: str) -> None:
        subs = []
        for k, v in d.items():
            if v is None:
                continue
            if isinstance(v, dict) and (not v or any(isinstance(x, dict) for x in v.values()) or prefix == ""):
                subs.append((k, v))
            else:
                lines.append(f"{_key(k)} = {_scalar(v)}")
        for k, v in subs:
            name = f"{prefix}.{_key(k)}" if prefix else _key(k)
            lines.append("")
            lines.append(f"[{name}]")
            table(v, name)

    table(data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def struct_to_toml(obj: msgspec.Struct) -> str:
    """TOML text of a msgspec Struct (e.g. a resolved Profile)."""
    return dumps(msgspec.to_builtins(obj))
