"""The app's "export figures" action (results and compare screens): ask where, draw the
figures with :mod:`mle_tui.core.figures` in a thread worker (matplotlib without pyplot), and
notify when done. ``app.last_figures`` lists the files written (tests read it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.screen import Screen

from ..core.errors import InputError
from .modals import ExportScreen

PROMPT = "Write figures (PNG, with the command that redraws them in their metadata) to:"


def target_text(target_s: float | None) -> str | None:
    """A ``--target`` value for the reproducing command."""
    return None if target_s is None else f"{target_s * 1e3:g}ms"


def ask_and_draw(screen: Screen, default_dest: Path, draw: Callable[[Path], list[Path]]) -> None:
    """Ask for a directory (``default_dest`` filled in), then ``draw(dest)`` off the UI thread."""

    def chosen(dest: str | None) -> None:
        if not dest:
            return
        screen.app.notify(f"Drawing figures into {dest}…")
        screen.run_worker(lambda: _draw(screen, Path(dest).expanduser(), draw), thread=True,
                          group="figures", exclusive=True, exit_on_error=False)

    screen.app.push_screen(ExportScreen(str(default_dest), prompt=PROMPT), chosen)


def _draw(screen: Screen, dest: Path, draw: Callable[[Path], list[Path]]) -> None:
    app = screen.app
    try:
        written = draw(dest)
    except InputError as exc:
        app.call_from_thread(app.notify, f"Figures not written: {exc.problem}", severity="error", timeout=10)
        return
    except (OSError, ValueError) as exc:
        app.call_from_thread(app.notify, f"Figures not written: {exc}", severity="error", timeout=10)
        return

    def done() -> None:
        app.last_figures = written  # type: ignore[attr-defined]
        app.notify(f"Wrote {len(written)} figures to {dest}")

    app.call_from_thread(done)
