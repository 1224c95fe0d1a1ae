"""Cancellation while requests are prepared: a check that raises
:class:`~mle_tui.core.errors.Cancelled` once the caller's event is set, and a way to obey it
while one long call (reading and decoding a large file) runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import Cancelled


def _interruptible(fn: Callable[[], Any], cancel: Any | None, check: Callable[[], None]) -> Any:
    """``fn()``; with a cancel event, run in a daemon thread so a cancel is obeyed while a large
    file is read and decoded (one long C call): the result is then dropped."""
    if cancel is None:
        return fn()
    import threading

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=work, name="mle-tui-dataset", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.05)
        check()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _checker(cancel: Any | None) -> Callable[[], None]:
    if cancel is None:
        return lambda: None
    is_set = cancel.is_set if hasattr(cancel, "is_set") else cancel

    def check() -> None:
        if is_set():
            raise Cancelled("preparing requests was cancelled")

    return check
