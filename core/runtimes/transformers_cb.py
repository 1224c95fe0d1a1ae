"""The transformers runtime: continuous batching in this process (``ContinuousBatchingManager``).

An LLM runtime for machines without vLLM. Per configuration: ``max_requests_per_batch`` =
``max_num_seqs``; every request is submitted at t = 0 (or on the profile's arrival process);
per-token timestamps recorded by transformers give TTFT, TPOT, ITL and E2E with vLLM ``bench
serve``'s definitions (:func:`mle_tui.core.measure.latency.request_row`); running and waiting requests
are read from the scheduler at 10 Hz into the same batch trace the vLLM runtime produces, so the
steady-state rules apply unchanged (:mod:`.transformers_cb_drive` runs a configuration's workload). Its numbers are labelled ``transformers`` in every record:
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
from .base import RuntimeContext, RuntimeResult
from .inprocess import (
    RealTime,
    RunLog,
    as_run_failure,
    drive_sim,
    free_accelerator_memory,
    load_shape,
    one_gpu_setup,
)
from .transformers_cb_drive import SAMPLE_PERIOD_S, drive  # noqa: F401 - SAMPLE_PERIOD_S re-exported

#: Lowest token id of random prompts (skips the special ids vocabularies start with).
_FIRST_RANDOM_ID = 10
#: KV-cache page size on CPU (tokens); GPUs use transformers' default.
_CPU_PAGE_SIZE = 64


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
            return drive(ctx, rt, mgr, reqs, prompts, out_lens, eos, B, log)
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
