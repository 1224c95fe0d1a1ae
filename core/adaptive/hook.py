"""What :class:`~..config_run.ConfigRun` calls to stop a configuration early: one monitor per
configuration, fed from its batch callback, that marks the trace, logs the decision and sets
the runtime's ``stop_early`` event."""

from __future__ import annotations

import threading
from collections.abc import Callable

import msgspec

from ..events import LogLine
from ..records import EarlyStop
from .spec import AdaptiveSpec
from .stopping import EarlyStopMonitor


def early_stop_monitor(spec: AdaptiveSpec | None, *, profile, cfg, runtime, energy_between: Callable,  # noqa: ANN001
                       stop_event: threading.Event, mark: Callable[[float, str], None],
                       emit: Callable) -> EarlyStopMonitor | None:  # noqa: ANN001
    """The monitor, or None where early stopping does not apply (grid sweep, diffusion, the
    request-count rule, a runtime that cannot abort its requests, ``ci_rel = 0``)."""
    if (spec is None or not spec.ci_rel > 0 or not profile.is_llm or profile.steady_state.rule != "saturation"
            or not getattr(runtime, "supports_early_stop", False)):
        return None
    ss = profile.steady_state
    key = cfg.key()

    def on_stop(es: EarlyStop) -> None:
        mark(es.t_s, f"early-stop: 95% CI of energy per token ±{es.ci_rel:.2%} over {es.blocks} blocks "
                     f"of {es.block_s:g} s")
        emit(LogLine(line=f"{key}: answer known at {es.t_s:.1f} s: {es.energy_per_token_j:.4g} J/token "
                          f"±{es.ci_rel:.2%} (95% CI, {es.blocks} blocks of {es.block_s:g} s); "
                          "the remaining requests are aborted"))
        stop_event.set()

    return EarlyStopMonitor(spec, max_num_seqs=cfg.batch, min_window_s=ss.min_window_s,
                            min_batch_fraction=ss.min_batch_fraction,
                            max_energy_per_token_j=ss.max_energy_per_token_j,
                            energy_between=energy_between, on_stop=on_stop)


def early_stop_fact(monitor: EarlyStopMonitor | None, ran: bool, requests: list, *,
                    exact_lengths: bool) -> EarlyStop | None:
    """The decision for the trace (None: not stopped early, or no result), with the workload's
    mean requested output length where every request gets exactly that many tokens (dummy
    weights with ``ignore_eos``, the simulator); with real weights EOS ends requests earlier and
    the record's mean is that of the requests that finished."""
    if monitor is None or monitor.decided is None or not ran:
        return None
    outs = [r.output_tokens for r in requests if getattr(r, "output_tokens", None)]
    mean = sum(outs) / len(outs) if exact_lengths and outs and len(outs) == len(requests) else None
    return msgspec.structs.replace(monitor.decided, workload_mean_output_tokens=mean)
