"""The benchmark profiles shipped with mle-tui.

They live in ``profiles/`` at the repository root. Both this module and the profiles keep the
same relative place in a checkout (``<repo>/core/shipped.py``, ``<repo>/profiles/``) and in an
installed package (``mle_tui/core/shipped.py``, ``mle_tui/profiles/``, installed as package data
by pyproject's ``mle_tui.profiles`` entry), so ``Path(__file__).parents[1] / "profiles"`` finds
them in both.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from .errors import InputError
from .profile import load_profile


def profiles_dir() -> Path:
    """Directory of the shipped profiles."""
    return Path(__file__).resolve().parents[1] / "profiles"


class ProfileInfo(msgspec.Struct, kw_only=True):
    name: str
    task: str
    runtime: str
    path: str
    description: str
    #: The one-line error when the file does not validate, else None.
    error: str | None = None


def list_profiles(directory: Path | None = None) -> list[ProfileInfo]:
    """Every ``*.toml`` of the shipped profiles, sorted by file name; invalid ones carry ``error``."""
    out = []
    for path in sorted((directory or profiles_dir()).glob("*.toml")):
        try:
            p = load_profile(path)
        except InputError as exc:
            out.append(ProfileInfo(name=path.stem, task="?", runtime="?", path=str(path),
                                   description="", error=exc.line()))
            continue
        out.append(ProfileInfo(name=p.name, task=p.task, runtime=p.runtime, path=str(path),
                               description=p.description))
    return out


def find_profile(name_or_path: str) -> Path | None:
    """A shipped profile by file stem or profile name (``demo``, ``demo.toml``), else None."""
    stem = name_or_path.removesuffix(".toml")
    candidate = profiles_dir() / f"{stem}.toml"
    if candidate.is_file():
        return candidate
    for info in list_profiles():
        if info.name == name_or_path and info.error is None:
            return Path(info.path)
    return None
