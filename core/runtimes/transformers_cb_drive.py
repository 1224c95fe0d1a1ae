"""Driving a started transformers ``ContinuousBatchingManager`` through a workload (for
:mod:`.transformers_cb`): submission on the profile's arrival process, the scheduler sampled at
10 Hz into the batch trace, and one :class:`~..records.RequestRow` per finished request from the
per-token timestamps transformers records (vLLM ``bench serve``'s definitions)."""

from __future__ import annotations

import random
import time
from typing import Any

from ..dataset_types import Request
from ..errors import RunFailure
from ..measure.latency import request_row
from ..records import RequestRow
from .base import BatchSample, RuntimeContext, RuntimeResult
from .inprocess import RealTime, RunLog, drive_sim, is_oom

#: Scheduler sampling period, s (10 Hz like the vLLM runtime's trace).
SAMPLE_PERIOD_S = 0.1


def request_key(rid: int) -> str:
    """The manager's id of request ``rid``."""
    return f"r{rid}"


def arrival_offsets_s(ctx: RuntimeContext, n: int) -> list[float]:
    """Submission offsets, s: all 0 for ``request_rate = inf``, else gamma inter-arrivals
    with shape ``burstiness`` and mean 1 / rate (as ``vllm bench serve``)."""
    load = ctx.profile.load
    if load.request_rate == float("inf"):
        return [0.0] * n
    rng = random.Random(ctx.profile.dataset.seed)
    theta = 1.0 / (load.request_rate * load.burstiness)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.gammavariate(load.burstiness, theta)
    return out


def drive(
    ctx: RuntimeContext, rt: RealTime, mgr: Any, reqs: list[Request], prompts: list[list[int]],
    out_lens: list[int], eos: Any, B: int, log: RunLog,
) -> RuntimeResult:
    """Feed the started manager ``mgr`` the requests (on the profile's arrival process, at most
    ``max_concurrency`` outstanding), sample its scheduler at :data:`SAMPLE_PERIOD_S` into the batch
    trace, and turn each finished request's token timestamps into its row."""
    dummy = ctx.profile.model.weights == "dummy"
    arrivals = arrival_offsets_s(ctx, len(reqs))
    cap = ctx.profile.load.max_concurrency or len(reqs)
    stall_s = ctx.profile.server.stall_timeout_s
    by_key = {request_key(r.id): i for i, r in enumerate(reqs)}
    start = rt.now_s()
    next_sub = 0
    outstanding = 0
    first_seen: set[str] = set()
    rows: list[RequestRow | None] = [None] * len(reqs)
    gaps: list[float] = []
    token_times: list[float] = []
    done = 0
    errors: list[str] = []
    tokens_total = 0
    last_progress = time.perf_counter()
    next_sample = rt.now_s()
    peak_running = 0

    def submit_due() -> None:
        nonlocal next_sub, outstanding
        now = rt.now_s() - start
        while next_sub < len(reqs) and arrivals[next_sub] <= now and outstanding < cap:
            i = next_sub
            mgr.add_request(
                prompts[i], request_id=request_key(reqs[i].id), max_new_tokens=out_lens[i],
                record_timestamps=True, streaming=False, eos_token_id=-1 if dummy else eos,
            )
            next_sub += 1
            outstanding += 1

    def sample() -> None:
        nonlocal peak_running
        bp = mgr.batch_processor
        running = waiting = 0
        if bp is not None:
            sched = bp.scheduler
            try:
                active = list(sched.active_requests.values())
                running = len(active)
                waiting = len(sched.waiting_requests)
            except RuntimeError:  # changed size while copying: skip this sample's first tokens
                active = []
                running = len(sched.active_requests)
                waiting = len(sched.waiting_requests)
            for state in active:
                stamps = state.timestamps
                if stamps and state.request_id not in first_seen:
                    first_seen.add(state.request_id)
                    ctx.on_first_token(int(state.request_id[1:]), rt.to_run(stamps[0]))
        waiting += mgr.input_queue.qsize()
        peak_running = max(peak_running, running)
        t = rt.now_s()
        ctx.on_batch(BatchSample(t_s=t, running=float(running), waiting=float(waiting)))
        drive_sim(ctx, running / B)

    submit_due()
    while done < len(reqs):
        if ctx.cancel.is_set():
            raise RunFailure("stopped by request")
        now = rt.now_s()
        if now >= next_sample:
            sample()
            next_sample += SAMPLE_PERIOD_S
            if next_sample < now:
                next_sample = now + SAMPLE_PERIOD_S
        submit_due()
        out = mgr.get_result(timeout=max(0.005, min(SAMPLE_PERIOD_S, next_sample - rt.now_s())))
        if out is None:
            if not mgr.is_running() and mgr.output_router.output_queue.empty():
                fatal = mgr.background_thread_status.fatal_error
                if fatal is not None and is_oom(fatal):
                    raise RunFailure(f"CUDA out of memory at max_num_seqs {B}") from fatal
                raise RunFailure(
                    f"transformers generation loop stopped with {len(reqs) - done} requests left"
                    + (f": {type(fatal).__name__}: {fatal}" if fatal is not None else "")
                )
            if time.perf_counter() - last_progress > stall_s:
                raise RunFailure(f"transformers generation stalled for {stall_s:.0f} s")
            continue
        if not out.is_finished():
            continue
        last_progress = time.perf_counter()
        i = by_key.get(out.request_id)
        if i is None:
            continue
        req = reqs[i]
        stamps = [rt.to_run(t) for t in (out.timestamps or [])]
        if out.request_id not in first_seen and stamps:
            first_seen.add(out.request_id)
            ctx.on_first_token(req.id, stamps[0])
        n_out = len(out.generated_tokens)
        stamps = stamps[: max(1, n_out)]
        ok = out.error is None
        if not ok:
            errors.append(str(out.error))
            fatal = mgr.background_thread_status.fatal_error
            if "out of memory" in str(out.error).lower() or (fatal is not None and is_oom(fatal)):
                raise RunFailure(f"CUDA out of memory at max_num_seqs {B}")
        row, req_gaps = request_row(
            id=req.id, send_s=rt.to_run(out.created_time), chunk_times_s=stamps if ok else [],
            input_tokens=len(prompts[i]), output_tokens=n_out if ok else 0,
            # As the vLLM runtime: with EOS disabled the length is prescribed, not a cap hit.
            hit_cap=(not dummy) and n_out >= out_lens[i], ok=ok, error=None if ok else str(out.error),
        )
        rows[i] = row
        gaps.extend(req_gaps)
        if ok:
            token_times.extend(stamps)
        tokens_total += n_out if ok else 0
        done += 1
        outstanding -= 1
        ctx.on_request(row)
        submit_due()
    sample()
    elapsed = rt.now_s() - start
    log.line(
        f"{done} requests, {tokens_total} output tokens in {elapsed:.2f} s "
        f"({tokens_total / elapsed if elapsed > 0 else 0:.1f} tokens/s), peak running {peak_running}"
        + (f", {len(errors)} failed: {errors[0]}" if errors else "")
    )
    token_times.sort()
    return RuntimeResult(
        requests=[r for r in rows if r is not None],
        itl_gaps_s=gaps,
        token_times_s=token_times,
        token_counts_exact=True,
        server_output_tokens=tokens_total,
        log_tail=log.tail(),
        batch_source=f"transformers scheduler {1 / SAMPLE_PERIOD_S:.0f} Hz",
    )
