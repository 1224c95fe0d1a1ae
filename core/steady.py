"""Steady-state detection (online, sample by sample, and offline on a whole trace) and the
validity gates. CONTRACT STUB: signatures are fixed; bodies to be implemented."""

from __future__ import annotations

from .records import Gate, SteadyState  # noqa: F401  (re-exported types)
import msgspec


class Window(msgspec.Struct, kw_only=True):
    """A detected (possibly still open) steady window on the run clock."""

    start_s: float
    end_s: float | None = None  # None while still open (online)


class SaturationDetector:
    """Paper rule: steady while the server's running batch is saturated at ``max_num_seqs``.

    ``feed(t_s, running, waiting)`` sample by sample; ``window`` is the current window (open or
    closed) or None. The window opens at the first sample of the longest run of samples with
    ``running >= saturation_fraction * B`` (default 1.0 with a tolerance of one request),
    and closes when running drops below that for good (queue drained: waiting == 0)."""

    def __init__(self, max_num_seqs: int, tolerance: int = 1) -> None:
        raise NotImplementedError

    def feed(self, t_s: float, running: float, waiting: float) -> Window | None:
        raise NotImplementedError

    @property
    def window(self) -> Window | None:
        raise NotImplementedError


class RequestCountDetector:
    """ML.ENERGY v3 rule: window starts when the B-th request receives its first token and ends
    when N - B - 1 requests have finished (N total requests)."""

    def __init__(self, max_num_seqs: int, num_requests: int) -> None:
        raise NotImplementedError

    def first_token(self, t_s: float) -> Window | None:
        raise NotImplementedError

    def finished(self, t_s: float) -> Window | None:
        raise NotImplementedError

    @property
    def window(self) -> Window | None:
        raise NotImplementedError


def detect_offline(
    rule: str,
    max_num_seqs: int,
    batch_t_s: list[float],
    running: list[float],
    waiting: list[float],
    first_token_s: list[float],
    finish_s: list[float],
) -> Window | None:
    """Detect the steady window on a whole trace with the named rule ("saturation" or
    "request-count"). Same answer as feeding the online detector the same data."""
    raise NotImplementedError


def evaluate_gates(
    *,
    window_s: float,
    mean_batch: float,
    max_num_seqs: int,
    energy_per_token_j: float | None,
    cap_fraction: float | None,
    min_window_s: float,
    min_batch_fraction: float,
    max_energy_per_token_j: float,
    max_cap_fraction: float,
) -> list[Gate]:
    """The validity gates: window length, mean batch >= fraction * B, energy per token in
    (0, max], share of outputs hitting the token cap (warning)."""
    raise NotImplementedError
