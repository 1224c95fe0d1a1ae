"""Input errors that the CLI turns into one line and exit status 2."""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: a profile, dataset, flag or record file.

    Rendered as one line ``FILE: FIELD: PROBLEM`` by the CLI, which then exits with status 2.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(self.line())

    def line(self) -> str:
        parts = [p for p in (self.source, self.field) if p]
        return ": ".join([*parts, self.problem])


class RunFailure(Exception):
    """A configuration could not be measured (crashed server, OOM, timeout).

    The runner turns it into a ``failed`` record and goes on with the sweep.
    """
