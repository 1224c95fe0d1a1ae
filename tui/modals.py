"""Small modal screens: confirmation, keys help, export destination."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

HELP_TEXT = """\
[b]Everywhere[/b]
  ?  / f1       this help              ctrl+p    command palette
  ctrl+q / q    quit (asks during a run; then stops it cleanly)
  tab / shift+tab  move between fields; arrows move in lists and tables

[b]Setup[/b]
  enter on a profile   load it      ctrl+r   start the sweep
  ctrl+o               records browser
  Sweep axes: 8..256 x2 (geometric), 200..700 +100 (arithmetic), 8, 16, 32 (list)

[b]Run[/b]
  s   skip the current configuration (asks)    x   stop the sweep (asks)
  f   finish the running configuration, then stop the sweep (asks)
  r   results of the configurations finished so far
  n   a cluster run: charts and header follow the next node

[b]Results[/b]
  t   latency target (updates the recommendation as you type)
  enter on a row   that configuration's power and batch timelines
  1 2 3   table / scatter / configuration     e   export records + CSV
  f   figures (PNG) into the run's figures/ or a path you type
  c   copy the recommended configuration (OSC 52, works over SSH)

[b]Records[/b]
  enter  open the run    space  mark for comparison    c  compare marked runs
  in a comparison: f   both fronts on one chart (PNG)
"""


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no question; ``y``/``enter`` on Yes confirms, ``n``/``escape`` declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes, self.no = yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.question, id="question")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="yes", compact=True)
                yield Button(f"{self.no} (n)", variant="primary", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("q", "close", "Close", show=False),
        Binding("f1", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static("[b]mle-tui keys[/b]  (escape closes)\n\n" + HELP_TEXT, id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)


class ExportScreen(ModalScreen[str | None]):
    """Ask where to export; returns the directory or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: str,
                 prompt: str = "Export records (msgspec files), pareto.csv and FORMULAS.txt to:") -> None:
        super().__init__()
        self.default = default
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.prompt, id="question")
            yield Input(self.default, id="export-path", compact=True)
            with Horizontal(id="dialog-buttons"):
                yield Button("Export", variant="primary", id="yes", compact=True)
                yield Button("Cancel", id="no", compact=True)

    def on_mount(self) -> None:
        inp = self.query_one(Input)
        inp.cursor_blink = self.app.cursor_blink_enabled  # type: ignore[attr-defined]
        inp.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.query_one(Input).value.strip() or None if event.button.id == "yes" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
