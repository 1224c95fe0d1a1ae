"""pyproject lists its packages by hand (the checkout's core/ and tui/ install under ``mle_tui``),
so a new subpackage left out of the list is missing from a wheel and its import fails only once
installed. Every directory with an ``__init__.py`` must be a listed package or the package data
of one (the amdsmi shim)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_dirs(config: dict) -> dict[str, Path]:
    """Listed package -> its directory in the checkout, through ``package-dir``."""
    roots = config["package-dir"]
    out = {}
    for name in config["packages"]:
        root = max((r for r in roots if name == r or name.startswith(r + ".")), key=len)
        out[name] = REPO / roots[root] / Path(*name[len(root):].strip(".").split(".")) if name != root \
            else REPO / roots[root]
    return out


def _unlisted(config: dict) -> list[str]:
    dirs = _package_dirs(config)
    data = config.get("package-data", {})
    missing = []
    for root in {Path(r) for r in config["package-dir"].values()}:
        for init in sorted((REPO / root).rglob("__init__.py")):
            pkg = init.parent
            if pkg in dirs.values():
                continue
            as_data = any(
                init.is_relative_to(d) and any(fnmatch.fnmatch(str(init.relative_to(d)), g) for g in data.get(n, []))
                for n, d in dirs.items()
            )
            if not as_data:
                missing.append(str(pkg.relative_to(REPO)))
    return missing


def test_every_package_directory_is_listed_in_pyproject() -> None:
    config = _config()
    assert all(d.is_dir() for d in _package_dirs(config).values())
    assert "mle_tui.core.datasets" in config["packages"]
    assert _unlisted(config) == []


def test_the_check_catches_an_unlisted_subpackage() -> None:
    config = _config()
    config["packages"] = [p for p in config["packages"] if p != "mle_tui.core.datasets"]
    assert _unlisted(config) == ["core/datasets"]
