"""The ``sim`` runtime: the simulated LLM server or diffusion batch runner behind the Runtime
interface. A test double and a demo; every result it produces is labelled simulated.

On a virtual clock it advances the clock iteration by iteration (an hour of serving in a fraction
of a second); on a wall clock it sleeps, so a demo unfolds in real time.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..clock import wait_until
from ..errors import RunFailure
from ..measure.latency import request_row
from ..measure.phases import label
from ..records import BatchRow, RequestRow
from ..sim.diffusion import Cancelled as DiffusionCancelled
from ..sim.diffusion import DiffusionCostModel, DiffusionSim, SimBatch
from ..sim.llm_server import Cancelled as LlmCancelled
from ..sim.llm_server import LlmCostModel, LlmServerSim, LlmSimTruth, SimRequestResult, arrival_times
from .base import BatchSample, RuntimeContext, RuntimeResult
from .server_reuse import client_cap, server_batch, server_mode

DEFAULT_RESOLUTION = (768, 768)
#: Idle time after the last diffusion batch, so the sampler locates the counter tick after the
#: batch's end mark before its energy is asked for (the sampler probes for <= 0.3 s).
MARK_SETTLE_S = 0.3


class SimRuntime:
    """Runs one configuration on the simulated server. ``last_truth`` keeps the LLM
    simulation's exact figures (saturation start/end, token timeline) of the last run."""

    name = "sim"
    supports_early_stop = True

    def __init__(self, llm_cost: LlmCostModel | None = None,
                 diffusion_cost: DiffusionCostModel | None = None) -> None:
        self.llm_cost = llm_cost or LlmCostModel()
        self.diffusion_cost = diffusion_cost or DiffusionCostModel()
        self.last_truth: LlmSimTruth | None = None
        self.last_batches: list[SimBatch] = []
        self._server: tuple | None = None  # the simulated server's key, for server_mode

    def run(self, ctx: RuntimeContext) -> RuntimeResult:
        log: list[str] = []

        def say(line: str) -> None:
            log.append(line)
            ctx.on_log(line)

        try:
            if ctx.profile.is_llm:
                result = self._run_llm(ctx, say)
            else:
                result = self._run_diffusion(ctx, say)
        except (LlmCancelled, DiffusionCancelled):
            say("sim: cancelled")
            raise RunFailure("cancelled", log[-50:]) from None
        finally:
            _write_log(ctx.log_path, log)
        result.log_tail = log[-50:]
        return result

    # -- LLM -------------------------------------------------------------------------------
    def _run_llm(self, ctx: RuntimeContext, say) -> RuntimeResult:  # noqa: ANN001
        cfg = ctx.config
        profile = ctx.profile
        reqs = ctx.requests
        load = profile.load
        cap = profile.dataset.max_output_tokens
        rows: list[RequestRow] = []
        gaps: list[float] = []

        def on_batch(t: float, running: int, waiting: int, kv: float, pre: int, tok: int) -> None:
            ctx.on_batch(BatchSample(t_s=t, running=float(running), waiting=float(waiting), kv_cache_usage=kv,
                                     preemptions_total=float(pre), generation_tokens_total=float(tok)))

        def on_finish(r: SimRequestResult) -> None:
            row, g = request_row(id=r.id, send_s=r.send_s, chunk_times_s=r.chunk_times_s,
                                 input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                                 hit_cap=r.output_tokens >= cap)
            rows.append(row)
            gaps.extend(g)
            ctx.on_request(row)

        key = (server_batch(profile, cfg), cfg.tensor_parallel, cfg.pipeline_parallel)
        mode = server_mode(profile, cfg, reused=self._server == key)
        self._server = key
        say(f"sim: LLM server, max_num_seqs={key[0]}, tensor_parallel={cfg.tensor_parallel}, "
            f"{len(reqs)} requests, KV capacity {self.llm_cost.kv_capacity_tokens} tokens")
        sim = LlmServerSim(
            reqs,
            max_num_seqs=key[0],
            clock=ctx.clock,
            gpus=working_gpus(ctx),
            tensor_parallel=cfg.tensor_parallel,
            cost=self.llm_cost,
            send_times_s=arrival_times(len(reqs), load.request_rate, load.burstiness, profile.dataset.seed),
            max_concurrency=client_cap(profile, cfg),
            cancel=ctx.cancel,
            stop=ctx.stop_early,
            on_batch=on_batch,
            on_first_token=ctx.on_first_token,
            on_finish=on_finish,
        )
        try:
            sim.run()
        except RuntimeError as exc:
            raise RunFailure(f"sim: {exc}", []) from None
        truth = sim.truth
        self.last_truth = truth
        sat = ("never saturated" if truth.saturation_start_s is None else
               f"saturated {truth.saturation_start_s:.2f}-{truth.saturation_end_s:.2f} s")
        say(f"sim: done in {truth.end_s:.2f} s, {truth.iterations} iterations, {truth.total_tokens} tokens, "
            f"{truth.preemptions} preemptions, {sat}")
        rows.sort(key=lambda r: r.id)
        return RuntimeResult(
            requests=rows,
            server_output_tokens=truth.total_tokens,
            batch_source="sim scheduler, 10 Hz",
            simulated=True,
            itl_gaps_s=gaps,
            token_times_s=truth.iter_end_s,
            token_counts=truth.iter_tokens,
            token_counts_exact=True,
            aborted_tokens_in_timeline=True,  # the scheduler's own timeline: every token generated
            server_mode=mode,
        )

    # -- diffusion -------------------------------------------------------------------------
    def _run_diffusion(self, ctx: RuntimeContext, say) -> RuntimeResult:  # noqa: ANN001
        cfg = ctx.config
        load = ctx.profile.load
        width = cfg.width or DEFAULT_RESOLUTION[0]
        height = cfg.height or DEFAULT_RESOLUTION[1]
        B = cfg.batch
        steps = cfg.num_inference_steps or 25
        reqs = ctx.requests
        batches: list[BatchRow] = []
        rows: list[RequestRow] = []
        next_req = [0]

        def on_sample(t: float, running: int, waiting: int) -> None:
            ctx.on_batch(BatchSample(t_s=t, running=float(running), waiting=float(waiting)))

        def finish(b: SimBatch) -> None:
            energy = ctx.energy_between(b.start_s, b.end_s)
            row = BatchRow(index=b.index, start_s=b.start_s, end_s=b.end_s, latency_s=b.end_s - b.start_s,
                           energy_j=energy, batch_size=b.batch_size, warmup=b.warmup)
            batches.append(row)
            ctx.on_batch_done(row)
            if b.warmup:
                return
            for _ in range(b.batch_size):
                rid = reqs[next_req[0] % len(reqs)].id if reqs else next_req[0]
                next_req[0] += 1
                r = RequestRow(id=rid, send_s=b.start_s, first_token_s=None, end_s=b.end_s, input_tokens=0,
                               output_tokens=0, e2e_s=b.end_s - b.start_s)
                rows.append(r)
                ctx.on_request(r)

        pending: list[SimBatch] = []
        marked = [False]

        def mark() -> float:
            t = ctx.mark_energy()
            marked[0] = marked[0] or math.isfinite(t)
            return t

        def on_done(b: SimBatch) -> None:
            for t, text in sim_phase_marks(b.start_s, b.end_s, steps):
                ctx.on_mark(t, label(b.index, text))
            # A batch's energy is asked for once the sampler has located the counter tick after
            # its end mark: after the next batch, or after MARK_SETTLE_S for the last one.
            for p in pending:
                finish(p)
            pending[:] = [b]

        say(f"sim: diffusion, batch_size={B}, steps={steps}, {width}x{height}, "
            f"{load.warmup_batches} warm-up + {load.batches} measured batches")
        sim = DiffusionSim(
            batch_size=B, num_inference_steps=steps, width=width, height=height, batches=load.batches,
            warmup_batches=load.warmup_batches, clock=ctx.clock, gpus=working_gpus(ctx),
            tensor_parallel=cfg.tensor_parallel, cost=self.diffusion_cost, cancel=ctx.cancel,
            on_batch_sample=on_sample, on_batch_done=on_done, mark=mark,
        )
        self.last_batches = sim.run()
        if pending and marked[0] and not wait_until(ctx.clock, ctx.clock.now_s() + MARK_SETTLE_S, ctx.cancel):
            raise DiffusionCancelled()
        for p in pending:
            finish(p)
        say(f"sim: {len(batches)} batches done")
        return RuntimeResult(requests=rows, batches=batches, batch_source="sim batch runner, 10 Hz", simulated=True)


#: Shares of a simulated batch spent encoding and decoding (the rest denoises, in equal steps).
SIM_ENCODE_SHARE, SIM_DECODE_SHARE = 0.04, 0.12


def sim_phase_marks(t0: float, t1: float, steps: int) -> list[tuple[float, str]]:
    """Phase marks of a simulated batch (labels of :mod:`..measure.phases` without the batch)."""
    d = t1 - t0
    a, z = t0 + SIM_ENCODE_SHARE * d, t1 - SIM_DECODE_SHARE * d
    out = [(t0, "encode"), (a, "denoise")]
    out += [(a + (z - a) * (k + 1) / max(1, steps), f"step:{k}") for k in range(steps)]
    return out + [(z, "decode"), (t1, "end")]


def _write_log(path: Path, lines: list[str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write("".join(f"{line}\n" for line in lines))
    except OSError:
        pass


def working_gpus(ctx: RuntimeContext) -> list | None:
    """The simulated GPUs the sim server loads: the configuration's, less those at the
    positions ``sim.idle_gpus`` names (a test double for a server on the wrong devices)."""
    if ctx.sim_gpus is None:
        return None
    idle = set(ctx.profile.sim.idle_gpus)
    return [g for k, g in enumerate(ctx.sim_gpus) if k not in idle]
