"""The transformers runtime: continuous batching in this process (``ContinuousBatchingManager``).

An LLM runtime for machines without vLLM. Per configuration: ``max_requests_per_batch`` =
``max_num_seqs``; every request is submitted at t = 0 (or on the profile's arrival process);
per-token timestamps recorded by transformers give TTFT, TPOT, ITL and E2E with vLLM ``bench
serve``'s definitions (:func:`mle_tui.core.measure.latency.request_row`); running and waiting requests
are read from the scheduler at 10 Hz into the same batch trace the vLLM runtime produces, so the
steady-state rules apply unchanged. Its numbers are labelled ``transformers`` in every record:
untuned, it is far slower than vLLM.

``weights = "dummy"`` builds the real architecture from a config (a directory with config.json,
a JSON file, or a shipped shape such as ``llama-3.1-8b``; ``tiny-llama`` is a test shape) with the
project's dummy-weight scheme, EOS disabled and exact output lengths (``Request.output_tokens``).
Prompts are the requests' token ids, else the model's (or ``model.tokenizer``'s) encoding of the
text, else seeded random ids of the request's length. Decoding is greedy.
"""

from __future__ import annotations

import random
import time
from typing import Any

from ..dataset_types import Request
from ..dummy_init import describe, init_dummy_, place_
from ..errors import InputError, RunFailure
from ..measure.latency import request_row
from ..records import RequestRow
from .base import BatchSample, RuntimeContext, RuntimeResult
from .inprocess import (
    RealTime,
    RunLog,
    as_run_failure,
    drive_sim,
    free_accelerator_memory,
    is_oom,
    load_shape,
    one_gpu_setup,
)

#: Scheduler sampling period, s (10 Hz like the vLLM runtime's trace).
SAMPLE_PERIOD_S = 0.1
#: Lowest token id of random prompts (skips the special ids vocabularies start with).
_FIRST_RANDOM_ID = 10
#: KV-cache page size on CPU (tokens); GPUs use transformers' default.
_CPU_PAGE_SIZE = 64


def _request_key(rid: int) -> str:
    return f"r{rid}"


class _Loaded:
    def __init__(self, key: tuple[str, ...], model: Any, tokenizer: Any, init_line: str | None) -> None:
        self.key = key
        self.model = model
        self.tokenizer = tokenizer
        self.init_line = init_line


class TransformersRuntime:
    """transformers continuous batching, in-process. The model is kept between configurations
    of a sweep (same model, dtype and device)."""

    name = "transformers"

    def __init__(self) -> None:
        self._loaded: _Loaded | None = None
        self._vlm: Any = None

    def _visual(self, profile: Any) -> Any:
        """Visual chat runs in :mod:`.transformers_vlm` (static batches: CB takes no images)."""
        if profile.task != "visual-chat":
            return None
        if self._vlm is None:
            from .transformers_vlm import TransformersVlmRuntime

            self._vlm = TransformersVlmRuntime()
        return self._vlm

    # ------------------------------------------------------------------ loading

    def _load(self, ctx: RuntimeContext, device: str, dtype: Any, log: RunLog) -> _Loaded:
        m = ctx.profile.model
        key = (m.id, m.weights, m.tokenizer or "", str(dtype), device)
        if self._loaded is not None and self._loaded.key == key:
            return self._loaded
        self._loaded = None
        free_accelerator_memory()
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        t0 = time.perf_counter()
        seed = ctx.profile.dataset.seed
        tokenizer = None
        try:
            if m.weights == "dummy":
                shape = load_shape(m.id, "LLM")
                model_type = shape.pop("model_type", None)
                if not model_type:
                    raise InputError(m.id, "model_type", "missing from the model config")
                shape.pop("torch_dtype", None)
                shape.pop("dtype", None)
                config = AutoConfig.for_model(model_type, **shape)
                config._attn_implementation = "sdpa"
                with torch.device(device):
                    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
                init_dummy_(place_(model, device), seed)
                init_line: str | None = f"weights: dummy, init {describe(seed)}"
                if m.tokenizer:
                    tokenizer = AutoTokenizer.from_pretrained(m.tokenizer)
            else:
                model = AutoModelForCausalLM.from_pretrained(m.id, dtype=dtype, attn_implementation="sdpa")
                model = model.to(device)
                tokenizer = AutoTokenizer.from_pretrained(m.tokenizer or m.id)
                init_line = None
        except (InputError, RunFailure):
            raise
        except Exception as exc:
            raise as_run_failure(exc, f"loading {m.id}", f"cannot load model {m.id}") from exc
        model.eval()
        n_params = sum(p.numel() for p in model.parameters())
        log.line(
            f"loaded {type(model).__name__} {m.id} ({m.weights}, {n_params / 1e9:.3f} B params, "
            f"{str(dtype).removeprefix('torch.')}) on {device} in {time.perf_counter() - t0:.1f} s"
        )
        self._loaded = _Loaded(key, model, tokenizer, init_line)
        return self._loaded

    def load_requests(self, profile: Any, *, base_dir: Any = None, on_note: Any = None) -> list[Request]:
        """The workload, tokenised for this model (runner hook): exact token counts with the
        model's tokenizer (or ``model.tokenizer``); for dummy weights without one, seeded random
        prompt ids in the model's vocabulary."""
        if self._visual(profile) is not None:
            return self._vlm.load_requests(profile, base_dir=base_dir, on_note=on_note)
        from ..datasets import load_requests

        m = profile.model
        tokenizer = None
        vocab = None
        if m.weights == "dummy":
            shape = load_shape(m.id, "LLM")
            text = shape.get("text_config") or shape
            vocab = int(text.get("vocab_size") or 0) or None
            name = m.tokenizer
        else:
            name = m.tokenizer or m.id
        if name:
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(name)
            except Exception as exc:  # noqa: BLE001 - reported as bad input
                raise InputError("profile", "model.tokenizer" if m.tokenizer else "model.id",
                                 f"cannot load tokenizer {name!r}: {type(exc).__name__}: {exc}") from None
        return load_requests(profile, tokenizer=tokenizer, vocab_size=None if tokenizer else vocab,
                             base_dir=base_dir, on_note=on_note)

    @staticmethod
    def _prompt_ids(req: Request, tokenizer: Any, vocab: int, max_len: int, seed: int) -> list[int]:
        ids: list[int] | None = None
        if req.prompt_token_ids:
            ids = list(req.prompt_token_ids)
        elif tokenizer is not None and req.messages and getattr(tokenizer, "chat_template", None):
            ids = list(tokenizer.apply_chat_template(req.messages, add_generation_prompt=True, tokenize=True))
        elif tokenizer is not None and (req.prompt or req.messages):
            text = req.prompt or "\n".join(m.get("content", "") for m in req.messages or [])
            ids = list(tokenizer.encode(text))
        if not ids:
            rng = random.Random(seed * 1_000_003 + req.id)
            n = max(1, req.input_tokens)
            ids = [rng.randrange(min(_FIRST_RANDOM_ID, vocab - 1), vocab) for _ in range(n)]
        ids = [i % vocab for i in ids]
        return ids[: max(1, max_len)]

    # ------------------------------------------------------------------ running

    def run(self, ctx: RuntimeContext) -> RuntimeResult:
        if self._visual(ctx.profile) is not None:
            return self._vlm.run(ctx)
        try:
            import torch  # noqa: F401
            from transformers import ContinuousBatchingConfig, GenerationConfig
        except ImportError as exc:
            from ..errors import missing_dependency

            raise missing_dependency(exc, "the transformers runtime", "profile") from None
        cfg = ctx.config
        B = int(cfg.max_num_seqs or 1)
        log, device, dtype = one_gpu_setup(ctx, "transformers")
        mgr = None
        try:
            loaded = self._load(ctx, device, dtype, log)
            if loaded.init_line:
                log.pin(loaded.init_line)
            model = loaded.model
            text_cfg = model.config.get_text_config()
            vocab = int(text_cfg.vocab_size)
            max_pos = int(getattr(text_cfg, "max_position_embeddings", 4096) or 4096)
            if ctx.profile.server.max_model_len:
                max_pos = min(max_pos, ctx.profile.server.max_model_len)
            dummy = ctx.profile.model.weights == "dummy"
            seed = ctx.profile.dataset.seed

            reqs = ctx.requests
            out_lens = [max(1, r.output_tokens or 1) for r in reqs]
            prompts = []
            for r, n_out in zip(reqs, out_lens):
                prompts.append(self._prompt_ids(r, loaded.tokenizer, vocab, max_pos - n_out, seed))
            max_prompt = max((len(p) for p in prompts), default=1)
            max_out = max(out_lens, default=1)

            eos: Any = -1 if dummy else (model.generation_config.eos_token_id
                                         if model.generation_config.eos_token_id is not None
                                         else text_cfg.eos_token_id)
            gen_cfg = GenerationConfig(
                max_new_tokens=max_out, do_sample=False, eos_token_id=eos,
                pad_token_id=0 if text_cfg.pad_token_id is None else text_cfg.pad_token_id,
            )
            cb_kwargs: dict[str, Any] = dict(
                max_requests_per_batch=B, scheduler_type="fifo", seed=seed,
            )
            on_gpu = device.startswith("cuda")
            if on_gpu:
                if ctx.profile.server.gpu_memory_utilization:
                    cb_kwargs["max_memory_percent"] = ctx.profile.server.gpu_memory_utilization
                if ctx.profile.server.enforce_eager:
                    cb_kwargs["use_cuda_graph"] = False
            else:
                # CPU: size the KV cache from the workload (the default sizes it from host RAM).
                per_req = -(-(max_prompt + max_out) // _CPU_PAGE_SIZE)
                cb_kwargs.update(
                    page_size=_CPU_PAGE_SIZE, num_blocks=B * per_req + 2,
                    max_batch_tokens=max(256, max_prompt + B), use_cuda_graph=False,
                    auto_switch_to_flash=False, use_async_batching=False,
                )
            cb_cfg = ContinuousBatchingConfig(**cb_kwargs)
            log.line(
                f"{len(reqs)} requests, max_num_seqs {B}, prompt <= {max_prompt} tokens, "
                f"output <= {max_out} tokens, EOS {'disabled' if dummy else 'enabled'}, on {device}"
            )
            mgr = model.init_continuous_batching(gen_cfg, cb_cfg)
            if on_gpu:
                mgr.warmup()
            rt = RealTime(ctx.clock)
            mgr.start()
            return self._drive(ctx, rt, mgr, reqs, prompts, out_lens, eos, B, log)
        except (InputError, RunFailure):
            raise
        except Exception as exc:
            raise as_run_failure(exc, f"at max_num_seqs {B}", "transformers failed", free_memory=False) from exc
        finally:
            drive_sim(ctx, 0.0)
            if mgr is not None:
                try:
                    mgr.stop(block=True, timeout=30, hard_stop=True)
                    mgr.destroy()
                except Exception:  # noqa: BLE001 - cleanup must not mask the outcome
                    pass
            free_accelerator_memory()
            log.close()

    def _arrivals(self, ctx: RuntimeContext, n: int) -> list[float]:
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

    def _drive(
        self, ctx: RuntimeContext, rt: RealTime, mgr: Any, reqs: list[Request], prompts: list[list[int]],
        out_lens: list[int], eos: Any, B: int, log: RunLog,
    ) -> RuntimeResult:
        dummy = ctx.profile.model.weights == "dummy"
        arrivals = self._arrivals(ctx, len(reqs))
        cap = ctx.profile.load.max_concurrency or len(reqs)
        stall_s = ctx.profile.server.stall_timeout_s
        by_key = {_request_key(r.id): i for i, r in enumerate(reqs)}
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
                    prompts[i], request_id=_request_key(reqs[i].id), max_new_tokens=out_lens[i],
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
