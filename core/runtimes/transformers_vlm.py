"""Visual chat in this process with transformers: a vision-language model (LLaVA-shaped) run in
static batches of ``max_num_seqs`` requests with plain batched ``generate``.

transformers' continuous batching takes token ids only (no ``pixel_values``), so this runtime
batches statically: every request is submitted at t = 0 and the queue is served in waves of B
requests (left-padded, images through the model's processor). A wave occupies B slots until its
longest response is done, so the batch trace reports B running for the whole wave (the padded
rows are computed) and the requests not yet started as waiting; the steady-state rules and
eq. 2 apply unchanged, the last partial wave being ramp-down. Each decoding step is timed (a
``generate`` streamer), so every token has its time; a request's tokens are its first
``output_tokens`` (dummy weights: exact lengths, EOS off; real weights: up to its first EOS).
Prompt tokens per request are the processor's (text and image tokens, as vLLM's usage reports
them) and image tokens are split off as on the vLLM path (:func:`.loadgen.image_row`).

``model.id`` is a shipped vision-language shape (``tiny-llava``, ``llava-1.5-7b``; built with
its tokenizer and processor by :mod:`..model_dirs`) or a model directory / Hugging Face id
with real weights. Labelled ``transformers`` in records: not a production engine.
"""

from __future__ import annotations

import time
from typing import Any

from ..dataset_types import Request
from ..datasets_images import sized
from ..dummy_init import describe, init_dummy_, place_
from ..errors import InputError, RunFailure
from ..image_sets import render
from ..measure.latency import request_row
from ..records import RequestRow
from .base import BatchSample, RuntimeContext, RuntimeResult
from .inprocess import RealTime, RunLog, as_run_failure, drive_sim, free_accelerator_memory, one_gpu_setup
from .loadgen import image_row

#: Batch-trace sampling period, s (at most; samples are taken at decoding steps).
SAMPLE_PERIOD_S = 0.1


def model_dir(profile: Any) -> str:
    """The directory (or Hugging Face id) the model, tokenizer and processor load from."""
    from ..model_dirs import dummy_model_dir

    m = profile.model
    return dummy_model_dir(m.id, m.weights) or m.id


class _Steps:
    """A ``generate`` streamer: times every decoding step, samples the batch trace, obeys cancel."""

    def __init__(self, on_step: Any) -> None:
        self.times: list[float] = []
        self._prompt_seen = False
        self._on_step = on_step

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())
        self._on_step(len(self.times))

    def end(self) -> None:
        pass


class TransformersVlmRuntime:
    name = "transformers"

    def __init__(self) -> None:
        self._loaded: tuple[tuple[str, ...], Any, Any, str | None] | None = None

    def load_requests(self, profile: Any, *, base_dir: Any = None, on_note: Any = None) -> list[Request]:
        """The workload with text tokens counted by the model's own tokenizer and chat template."""
        from transformers import AutoTokenizer

        from ..datasets import load_requests

        d = model_dir(profile)
        try:
            tok = AutoTokenizer.from_pretrained(d)
        except Exception as exc:  # noqa: BLE001 - reported as bad input
            raise InputError("profile", "model.id", f"cannot load the tokenizer of {d!r}: "
                             f"{type(exc).__name__}: {exc}") from None
        return load_requests(profile, tokenizer=tok, base_dir=base_dir, on_note=on_note)

    def _load(self, ctx: RuntimeContext, device: str, dtype: Any, log: RunLog) -> tuple[Any, Any, str | None]:
        m = ctx.profile.model
        d = model_dir(ctx.profile)
        key = (d, m.weights, str(dtype), device)
        if self._loaded is not None and self._loaded[0] == key:
            return self._loaded[1], self._loaded[2], self._loaded[3]
        self._loaded = None
        free_accelerator_memory()
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        t0 = time.perf_counter()
        seed = ctx.profile.dataset.seed
        try:
            processor = AutoProcessor.from_pretrained(d)
            if m.weights == "dummy":
                config = AutoConfig.from_pretrained(d)
                with torch.device(device):
                    model = AutoModelForImageTextToText.from_config(config, dtype=dtype)
                init_dummy_(place_(model, device), seed)
                init_line: str | None = f"weights: dummy, init {describe(seed)}"
            else:
                model = AutoModelForImageTextToText.from_pretrained(d, dtype=dtype).to(device)
                init_line = None
        except Exception as exc:
            raise as_run_failure(exc, f"loading {m.id}", f"cannot load model {m.id}") from exc
        model.eval()
        processor.tokenizer.padding_side = "left"
        n_params = sum(p.numel() for p in model.parameters())
        log.line(f"loaded {type(model).__name__} {m.id} ({m.weights}, {n_params / 1e9:.3f} B params, "
                 f"{str(dtype).removeprefix('torch.')}) on {device} in {time.perf_counter() - t0:.1f} s")
        self._loaded = (key, model, processor, init_line)
        return model, processor, init_line

    @staticmethod
    def _inputs(processor: Any, wave: list[Request], device: str, dtype: Any) -> Any:
        texts, images = [], []
        for r in wave:
            refs = r.images or []
            content = [{"type": "image"} for _ in refs] + [{"type": "text", "text": r.prompt or ""}]
            texts.append(processor.apply_chat_template([{"role": "user", "content": content}],
                                                       add_generation_prompt=True))
            images += [render(ref) for ref in refs]
        batch = processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        batch = batch.to(device)
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(dtype)
        return batch

    def run(self, ctx: RuntimeContext) -> RuntimeResult:
        import torch

        cfg, profile = ctx.config, ctx.profile
        B = int(cfg.batch)
        if profile.load.request_rate != float("inf"):
            raise RunFailure("the transformers visual-chat runtime submits every request at t = 0 "
                             "(load.request_rate = inf only)")
        log, device, dtype = one_gpu_setup(ctx, "transformers")
        dummy = profile.model.weights == "dummy"
        try:
            model, processor, init_line = self._load(ctx, device, dtype, log)
            if init_line:
                log.pin(init_line)
            reqs = sized(list(ctx.requests), cfg.image_size)
            rt = RealTime(ctx.clock)
            start = rt.now_s()
            rows: list[RequestRow] = []
            gaps: list[float] = []
            token_times: list[float] = []
            token_counts: list[int] = []
            n_images = sum(len(r.images or []) for r in reqs)
            log.line(f"{len(reqs)} requests ({n_images} images) in waves of {B}, static batching, "
                     f"EOS {'disabled' if dummy else 'enabled'}, on {device}")
            state = {"running": 0, "waiting": len(reqs), "next_sample": start}

            def sample(force: bool = False) -> None:
                now = rt.now_s()
                if ctx.cancel.is_set():
                    raise RunFailure("stopped by request")
                if force or now >= state["next_sample"]:
                    state["next_sample"] = now + SAMPLE_PERIOD_S
                    ctx.on_batch(BatchSample(t_s=now, running=float(state["running"]),
                                             waiting=float(state["waiting"])))
                    drive_sim(ctx, state["running"] / B)

            for w0 in range(0, len(reqs), B):
                wave = reqs[w0:w0 + B]
                out_lens = [max(1, r.output_tokens or 1) for r in wave]
                inputs = self._inputs(processor, wave, device, dtype)
                state["running"], state["waiting"] = len(wave), len(reqs) - w0 - len(wave)
                sample(force=True)
                firsts: set[int] = set()

                def on_step(n: int, wave: list[Request] = wave, firsts: set[int] = firsts) -> None:
                    if n == 1:
                        t = rt.to_run(time.perf_counter())
                        for r in wave:
                            if r.id not in firsts:
                                firsts.add(r.id)
                                ctx.on_first_token(r.id, t)
                    sample()

                steps = _Steps(on_step)
                max_new = max(out_lens)
                gen: dict[str, Any] = dict(max_new_tokens=max_new, do_sample=False, streamer=steps)
                if dummy:
                    gen["min_new_tokens"] = max_new
                with torch.inference_mode():
                    out = model.generate(**inputs, **gen)
                stamps = [rt.to_run(t) for t in steps.times]
                prompt_len = int(inputs["input_ids"].shape[1])
                eos = None if dummy else model.generation_config.eos_token_id
                eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
                for i, r in enumerate(wave):
                    n_out = min(out_lens[i], len(stamps))
                    if eos_ids:
                        new = out[i, prompt_len:].tolist()
                        hit = next((k + 1 for k, tok in enumerate(new) if tok in eos_ids), None)
                        n_out = min(n_out, hit) if hit else n_out
                    prompt_tokens = int(inputs["attention_mask"][i].sum())
                    row, req_gaps = request_row(
                        id=r.id, send_s=start, chunk_times_s=stamps[:n_out], input_tokens=prompt_tokens,
                        output_tokens=n_out, hit_cap=(not dummy) and n_out >= out_lens[i])
                    row = image_row(row, r, prompt_tokens) if r.images else row
                    rows.append(row)
                    gaps += req_gaps
                    ctx.on_request(row)
                for k, t in enumerate(stamps):
                    n = sum(1 for row in rows[-len(wave):] if row.output_tokens > k)
                    if n:
                        token_times.append(t)
                        token_counts.append(n)
            state["running"] = state["waiting"] = 0
            sample(force=True)
            total = sum(token_counts)
            elapsed = rt.now_s() - start
            log.line(f"{len(rows)} requests, {total} output tokens in {elapsed:.2f} s "
                     f"({total / elapsed if elapsed > 0 else 0:.1f} tokens/s)")
            return RuntimeResult(
                requests=rows, itl_gaps_s=gaps, token_times_s=token_times, token_counts=token_counts,
                token_counts_exact=True, server_output_tokens=total, log_tail=log.tail(),
                batch_source=f"transformers static batches, sampled at decoding steps (<= {1 / SAMPLE_PERIOD_S:.0f} Hz)")
        except (InputError, RunFailure):
            raise
        except Exception as exc:
            raise as_run_failure(exc, f"at max_num_seqs {B}", "transformers failed", free_memory=False) from exc
        finally:
            drive_sim(ctx, 0.0)
            free_accelerator_memory()
            log.close()
