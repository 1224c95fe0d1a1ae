"""VllmRuntime against the fake server (fast): lifecycle, failures, cancel, flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from proc_helpers import children_of_me

from mle_tui.core.clock import WallClock
from mle_tui.core.dataset_types import Request
from mle_tui.core.errors import InputError, RunFailure
from mle_tui.core.procgroup import group_alive
from mle_tui.core.profile import decode_profile
from mle_tui.core.runtimes import vllm as vllm_mod
from mle_tui.core.runtimes import vllm_server
from mle_tui.core.runtimes.base import RuntimeContext
from mle_tui.core.runtimes.vllm import VllmRuntime, resolve_model, server_command

FAKE = [sys.executable, str(Path(__file__).parent / "fake_vllm_server.py")]


def _profile(env: dict[str, str] | None = None, model: str = "fake", extra: str = "", server: str = ""):
    env_toml = ", ".join(f'{k} = "{v}"' for k, v in (env or {}).items())
    return decode_profile(f"""
name = "t"
task = "chat"
runtime = "vllm"
[model]
id = "{model}"
weights = "dummy"
{extra}
[dataset]
name = "synthetic"
[sweep]
max_num_seqs = 4
[server]
env = {{ {env_toml} }}
{server}
""")


class _Gpu:
    def __init__(self) -> None:
        self.loads: list[float] = []

    def set_load(self, utilisation: float) -> None:
        self.loads.append(utilisation)

    def speed_factor(self, utilisation: float) -> float:
        return 1.0


def _ctx(tmp_path: Path, profile, n: int = 24, **kw) -> RuntimeContext:
    reqs = [Request(id=i, prompt=f"p{i}", input_tokens=2, output_tokens=30 + i % 5) for i in range(n)]
    return RuntimeContext(profile=profile, config=profile.configs()[0], requests=reqs, clock=WallClock(),
                          gpu_indices=[0], run_dir=tmp_path, log_path=tmp_path / "logs" / "c.log", **kw)


def test_runs_a_configuration(tmp_path: Path) -> None:
    batches, rows, logs, firsts = [], [], [], []
    gpu = _Gpu()
    ctx = _ctx(tmp_path, _profile({"FAKE_STARTUP_S": "0.2", "FAKE_STEP_S": "0.01"}), sim_gpus=[gpu],
               on_batch=batches.append, on_request=rows.append, on_log=logs.append,
               on_first_token=lambda i, t: firsts.append(i))
    rt = VllmRuntime(launcher=FAKE, metrics_period_s=0.05)
    pgids: list[int] = []
    orig_add = rt.process_groups.add
    rt.process_groups.add = lambda pgid, proc=None: (pgids.append(pgid), orig_add(pgid, proc))[1]
    res = rt.run(ctx)
    assert len(res.requests) == 24 and all(r.ok for r in res.requests)
    client_tokens = sum(r.output_tokens for r in res.requests)
    assert client_tokens == sum(30 + i % 5 for i in range(24))
    assert res.server_output_tokens == client_tokens
    assert sum(res.token_counts) == client_tokens
    assert res.token_times_s == sorted(res.token_times_s)
    assert len(res.itl_gaps_s) == sum(r.itl_count for r in res.requests)
    assert len(rows) == 24 and sorted(firsts) == list(range(24))
    assert max(b.running for b in batches) == 4.0 and any(b.waiting > 0 for b in batches)
    assert max(gpu.loads) == 1.0 and min(gpu.loads) == 0.0
    assert res.batch_source == "vllm /metrics 0.05 s"
    # server log captured and forwarded; the API key never shown in our own lines
    text = (tmp_path / "logs" / "c.log").read_text()
    assert "fake vllm: listening" in text and any("listening" in line for line in logs)
    assert "--max-num-seqs" in text and "--load-format" in text
    assert not any("--api-key" in line for line in logs)
    assert text.startswith("mle-tui: vLLM server command: ")
    # one token per chunk from the fake: nothing bundled, per-chunk usage for every request
    assert res.bundled_requests == 0 and res.bundled_tokens == 0
    assert any("per-chunk usage for 24/24" in line for line in logs)
    assert any("/metrics: " in line and "(filtered)" in line for line in logs)
    # process group gone, registry empty
    assert len(pgids) == 1 and not group_alive(pgids[0])
    assert rt.process_groups.pgids() == []


def test_merged_chunks_and_an_unfiltered_metrics_endpoint(tmp_path: Path) -> None:
    """A server that sends three tokens a chunk and ignores the name[] filter (404 at
    /metrics/): tokens counted per chunk from the per-chunk usage, every request counted as
    bundled, the trace still polled (unfiltered)."""
    logs: list[str] = []
    ctx = _ctx(tmp_path, _profile({"FAKE_STARTUP_S": "0.1", "FAKE_STEP_S": "0.005", "FAKE_BUNDLE": "3",
                                   "FAKE_NO_FILTER": "1"}), n=8, on_log=logs.append)
    res = VllmRuntime(launcher=FAKE, metrics_period_s=0.05).run(ctx)
    outs = [r.output_tokens for r in res.requests]
    assert all(r.ok for r in res.requests) and sum(res.token_counts) == sum(outs) == res.server_output_tokens
    assert res.bundled_requests == 8
    # chunks of 3 and the rest with the finish reason: a last chunk of 1 token is not bundled
    assert res.bundled_tokens == sum(n - (1 if n % 3 == 1 else 0) for n in outs)
    assert all(r.itl_count == -(-r.output_tokens // 3) - 1 for r in res.requests)
    assert any("bytes each (unfiltered)" in line for line in logs)


def test_exit_during_startup_is_a_failure_with_log_tail(tmp_path: Path) -> None:
    rt = VllmRuntime(launcher=FAKE)
    with pytest.raises(RunFailure) as exc:
        rt.run(_ctx(tmp_path, _profile({"FAKE_MODE": "exit_startup", "FAKE_STARTUP_S": "0"})))
    assert exc.value.args[0] == "vLLM server exited with code 3 during startup"
    assert any("simulated startup crash" in line for line in exc.value.args[1])
    assert rt.process_groups.pgids() == []


def test_startup_timeout_kills_the_group(tmp_path: Path) -> None:
    rt = VllmRuntime(launcher=FAKE, kill_grace_s=1.0)
    seen: list[int] = []
    orig_add = rt.process_groups.add
    rt.process_groups.add = lambda pgid, proc=None: (seen.append(pgid), orig_add(pgid, proc))[1]
    t0 = time.monotonic()
    with pytest.raises(RunFailure, match=r"not ready after 1\.5 s"):
        rt.run(_ctx(tmp_path, _profile({"FAKE_MODE": "hang"}, server="startup_timeout_s = 1.5")))
    assert time.monotonic() - t0 < 6
    assert not group_alive(seen[0])


def test_silent_server_is_a_stall(tmp_path: Path) -> None:
    rt = VllmRuntime(launcher=FAKE, kill_grace_s=1.0)
    with pytest.raises(RunFailure, match=r"stalled: no token and no log output for \d+ s with 24 requests outstanding"):
        rt.run(_ctx(tmp_path, _profile({"FAKE_MODE": "silent_stall", "FAKE_STARTUP_S": "0"},
                                       server="stall_timeout_s = 1.0")))


def test_server_death_mid_run(tmp_path: Path) -> None:
    rt = VllmRuntime(launcher=FAKE)
    with pytest.raises(RunFailure) as exc:
        rt.run(_ctx(tmp_path, _profile({"FAKE_MODE": "die_after_s=0.3", "FAKE_STEP_S": "0.05",
                                        "FAKE_STARTUP_S": "0"})))
    assert exc.value.args[0] == "vLLM server exited with code 1 during the run"
    assert any("dying" in line for line in exc.value.args[1])


def test_a_server_whose_exit_shows_late_is_still_a_failure(tmp_path: Path) -> None:
    """Its streams fail at once but its exit status shows 4 s later (a starved host reaping it
    slowly, here a shell that waits): the runtime asks /health, hears nothing, and waits for the
    exit instead of a fixed few seconds (it used to wait 3 s, and the record came out of the
    half-run trace as ``invalid``)."""
    late = ["sh", "-c", f'"{FAKE[0]}" "{FAKE[1]}" "$@"; c=$?; sleep 4; exit $c', "sh"]
    with pytest.raises(RunFailure) as exc:
        VllmRuntime(launcher=late).run(_ctx(tmp_path, _profile({"FAKE_MODE": "die_after_s=0.3", "FAKE_STEP_S": "0.05",
                                                                 "FAKE_STARTUP_S": "0"})))
    assert exc.value.args[0] == "vLLM server exited with code 1 during the run"


def test_cancel_stops_within_a_second(tmp_path: Path) -> None:
    cancel = threading.Event()
    when: list[float] = []

    def on_first(rid: int, t: float) -> None:
        if not cancel.is_set():
            when.append(time.monotonic())
            cancel.set()

    rt = VllmRuntime(launcher=FAKE)
    seen: list[int] = []
    orig_add = rt.process_groups.add
    rt.process_groups.add = lambda pgid, proc=None: (seen.append(pgid), orig_add(pgid, proc))[1]
    ctx = _ctx(tmp_path, _profile({"FAKE_STEP_S": "0.05", "FAKE_STARTUP_S": "0"}), n=200,
               cancel=cancel, on_first_token=on_first)
    with pytest.raises(RunFailure) as exc:
        rt.run(ctx)
    assert exc.value.args[0] == "cancelled"
    assert time.monotonic() - when[0] < 2.0  # 0.2 s watch period + SIGTERM handling
    assert not group_alive(seen[0])


def test_kill_children_from_another_thread(tmp_path: Path) -> None:
    rt = VllmRuntime(launcher=FAKE)
    errors: list[BaseException] = []

    def go() -> None:
        try:
            rt.run(_ctx(tmp_path, _profile({"FAKE_MODE": "hang"}, server="startup_timeout_s = 60")))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    th = threading.Thread(target=go)
    th.start()
    deadline = time.monotonic() + 10
    while not rt.process_groups.pgids():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pgid = rt.process_groups.pgids()[0]
    rt.kill_children()  # what a signal handler does
    th.join(10)
    assert not th.is_alive() and not group_alive(pgid)
    assert isinstance(errors[0], RunFailure) and "during startup" in errors[0].args[0]


def test_own_probes_are_recognised_in_the_access_log() -> None:
    """Our polls (filtered /metrics/?name[]=..., /health, /v1/models) are not engine progress."""
    from mle_tui.core.runtimes.prom import filtered_url

    probe = vllm_mod._OWN_PROBES
    q = filtered_url("http://h/metrics").split("h", 2)[-1].split("/", 1)[1]
    for path in ("/metrics", "/health", "/v1/models", "/" + q):
        assert probe.search(f'INFO:     127.0.0.1:5 - "GET {path} HTTP/1.1" 200 OK'.encode()), path
    assert not probe.search(b'INFO:     127.0.0.1:5 - "POST /v1/completions HTTP/1.1" 200 OK')
    assert not probe.search(b'INFO:     127.0.0.1:5 - "GET /metricsX HTTP/1.1" 404')


def test_server_command_flags(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"vocab_size": 100}))
    prof = _profile(extra='tokenizer = "tok/x"', server="""
max_model_len = 2048
gpu_memory_utilization = 0.5
enforce_eager = true
extra_args = ["--seed", "7"]""")
    cmd = server_command(prof, model=str(model_dir), max_num_seqs=8, tensor_parallel=2, pipeline_parallel=1,
                         port=1234, tokenizer="tok/x", skip_tokenizer_init=False,
                         python="py", use_console_script=False)
    assert cmd[:5] == ["py", "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir)]
    joined = " ".join(cmd)
    assert "--api-key" not in cmd  # the key goes by environment (VLLM_API_KEY)
    for flag in ("--host 127.0.0.1", "--port 1234", "--max-num-seqs 8",
                 "--tensor-parallel-size 2", "--pipeline-parallel-size 1", "--max-model-len 2048",
                 "--gpu-memory-utilization 0.5", "--load-format dummy", "--enforce-eager",
                 "--tokenizer tok/x", "--dtype bfloat16"):
        assert flag in joined
    assert cmd[-2:] == ["--seed", "7"] and "--skip-tokenizer-init" not in cmd
    cmd = server_command(_profile(), model="org/m", max_num_seqs=4, tensor_parallel=1, pipeline_parallel=1,
                         port=1, tokenizer=None, skip_tokenizer_init=True, python="py",
                         use_console_script=True)
    assert cmd[:3] == ["vllm", "serve", "org/m"] and "--skip-tokenizer-init" in cmd
    assert "--enforce-eager" not in cmd and "--max-model-len" not in cmd
    assert "--api-server-count" not in cmd


def test_several_api_servers_launch_vllm_serve(tmp_path: Path) -> None:
    """The api_server module runs one API server whatever --api-server-count says (vLLM 0.26's
    __main__ calls run_server); `vllm serve` is the entry point that starts several."""
    prof = _profile(server="api_server_count = 3")
    kw = dict(model="org/m", max_num_seqs=4, tensor_parallel=1, pipeline_parallel=1, port=1, tokenizer=None,
              skip_tokenizer_init=True, python="py")
    cmd = server_command(prof, use_console_script=False, **kw)
    assert cmd[:5] == ["py", str(vllm_server.SERVE_SCRIPT), "org/m", "--api-server-count", "3"]
    assert vllm_server.SERVE_SCRIPT.is_file()
    assert "--model" not in cmd and "--port" in cmd
    assert server_command(prof, use_console_script=True, **kw)[:5] == [
        "vllm", "serve", "org/m", "--api-server-count", "3"]


def test_stream_interval_goes_to_the_server_only_when_above_one() -> None:
    """server.stream_interval = N passes --stream-interval N (vLLM's default, 1, passes nothing)."""
    kw = dict(model="org/m", max_num_seqs=4, tensor_parallel=1, pipeline_parallel=1, port=1, tokenizer=None,
              skip_tokenizer_init=True, python="py", use_console_script=False)
    cmd = server_command(_profile(server="stream_interval = 8"), **kw)
    i = cmd.index("--stream-interval")
    assert cmd[i + 1] == "8" and cmd.count("--stream-interval") == 1
    assert "--stream-interval" not in server_command(_profile(), **kw)


def test_tokenizer_detection_and_model_resolution(tmp_path: Path, monkeypatch) -> None:
    prof_dir = tmp_path / "profiles"
    prof_dir.mkdir()
    model_dir = tmp_path / "models" / "tiny"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("../models/tiny", prof_dir) == str(model_dir.resolve())
    assert resolve_model("models/tiny", None) == str(model_dir.resolve())
    assert resolve_model("meta-llama/Llama-3.1-8B", prof_dir) == "meta-llama/Llama-3.1-8B"
    assert resolve_model(str(model_dir), None) == str(model_dir)
    assert not vllm_mod.has_tokenizer(str(model_dir))
    (model_dir / "tokenizer.json").write_text("{}")
    assert vllm_mod.has_tokenizer(str(model_dir))
    assert vllm_mod.has_tokenizer("org/m")
    # Checked where the profile names it (model.id / model.tokenizer): a path that is no directory
    # is the profile's error, not a hub lookup of a path ("Repo id must be in the form ...").
    assert resolve_model("../models/tiny", prof_dir, "model.id") == str(model_dir.resolve())
    assert resolve_model("meta-llama/Llama-3.1-8B", prof_dir, "model.id") == "meta-llama/Llama-3.1-8B"
    for missing in (str(tmp_path / "nowhere"), "./nowhere", "../nowhere", "~/surely-no-such-model-dir"):
        with pytest.raises(InputError) as err:
            resolve_model(missing, prof_dir, "model.tokenizer")
        assert err.value.field == "model.tokenizer" and "no such model directory" in err.value.problem


def test_run_with_a_missing_model_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    prof = tmp_path / "p.toml"
    prof.write_text('''name = "t"
task = "chat"
runtime = "vllm"
[model]
id = "/surely/no/such/model-dir"
weights = "dummy"
[dataset]
name = "sharegpt"
num_requests = 4
[sweep]
max_num_seqs = [2]
[gpu]
simulated = true
''')
    out = subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", "run", str(prof), "--headless",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"mle-tui: {prof}: model.id: /surely/no/such/model-dir: no such model directory")


def test_config_only_model_gets_token_ids(tmp_path: Path) -> None:
    """No tokenizer files: --skip-tokenizer-init and token-id prompts (seeded, in the vocab)."""
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"vocab_size": 50}))
    logs: list[str] = []
    ctx = _ctx(tmp_path, _profile({"FAKE_STARTUP_S": "0"}, model=str(model_dir)), n=6, on_log=logs.append)
    res = VllmRuntime(launcher=FAKE).run(ctx)
    assert all(r.ok for r in res.requests)
    assert any("--skip-tokenizer-init" in line for line in logs if line.startswith("mle-tui: vLLM server command:"))
    assert all(r.input_tokens == 2 for r in res.requests)  # fake counts prompt ids


def test_console_script_detection(monkeypatch) -> None:
    import importlib.metadata as md

    monkeypatch.setattr(vllm_mod.shutil, "which", lambda name: "/usr/bin/vllm")

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(vllm_mod.importlib.metadata, "distribution", missing)
    assert not vllm_mod.vllm_console_script_works()
    monkeypatch.setattr(vllm_mod.importlib.metadata, "distribution", lambda name: object())
    assert vllm_mod.vllm_console_script_works()
    monkeypatch.setattr(vllm_mod.shutil, "which", lambda name: None)
    assert not vllm_mod.vllm_console_script_works()


_SIGNAL_SCRIPT = r"""
import sys
from pathlib import Path
from mle_tui.core.profile import decode_profile
from mle_tui.core.runner import SweepRunner
from mle_tui.core.runtimes.vllm import VllmRuntime
from mle_tui.core.dataset_types import Request
from mle_tui.core.events import SteadyUpdate

prof = decode_profile('''
name = "sig"
task = "chat"
runtime = "vllm"
[model]
id = "fake"
weights = "dummy"
[dataset]
name = "synthetic"
[sweep]
max_num_seqs = [4, 8]
[server]
env = { FAKE_STEP_S = "0.05", FAKE_STARTUP_S = "0" }
[gpu]
simulated = true
allow_simulated = true
''')
rt = VllmRuntime(launcher=[sys.executable, sys.argv[2]], metrics_period_s=0.1)
said = []
def listener(ev):
    if isinstance(ev, SteadyUpdate) and not said and rt.current_pgid:
        said.append(1)
        print(f"PGID {rt.current_pgid}", flush=True)
reqs = [Request(id=i, prompt="p", input_tokens=1, output_tokens=400) for i in range(64)]
summary = SweepRunner(prof, Path(sys.argv[1]), runtime=rt, requests=reqs, listener=listener).run()
print(f"STOPPED {summary.stopped} FAILED {summary.failed} COMPLETED {summary.completed}", flush=True)
"""


def _start_runner(tmp_path: Path):
    """A runner process (the script above) sweeping against the fake server."""
    import subprocess

    script = tmp_path / "run.py"
    script.write_text(_SIGNAL_SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "out"), FAKE[1]],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _server_pgid(proc) -> int:
    """The server's process group, once the runner saw the steady state open."""
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("PGID "):
            pgid = int(line.split()[1])
            assert group_alive(pgid)
            return pgid
    raise AssertionError("".join(lines[-20:]))


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_to_the_runner_kills_the_server_group(tmp_path: Path, sig: str) -> None:
    import signal

    proc = _start_runner(tmp_path)
    try:
        pgid = _server_pgid(proc)
        t0 = time.monotonic()
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 10
        assert "STOPPED True" in out, out[-2000:]
        assert not group_alive(pgid)
        # stopped, not failed: no record for the interrupted configuration (it reruns on resume)
        assert not list((tmp_path / "out" / "records").glob("*"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module", autouse=True)
def children_at_start() -> set[int]:
    return children_of_me()


def test_no_child_left(children_at_start: set[int]) -> None:
    """After all of the above in this module, no child process it started is alive."""
    assert children_of_me() - children_at_start == set()


def test_server_is_reused_across_power_limits_only(tmp_path: Path) -> None:
    """Configurations that differ only in the power limit share one server; a new
    max_num_seqs starts a new one; prefix caching is off for such runs; nothing survives."""
    from mle_tui.core.runner import SweepRunner

    prof = decode_profile("""
name = "reuse"
task = "chat"
runtime = "vllm"
[model]
id = "fake"
weights = "dummy"
[dataset]
name = "synthetic"
[sweep]
max_num_seqs = [4, 8]
power_limit_w = [300, 400]
[steady_state]
min_window_s = 0.1
[server]
env = { FAKE_STARTUP_S = "0.2", FAKE_STEP_S = "0.005" }
[gpu]
simulated = true
""", "reuse.toml")
    reqs = [Request(id=i, prompt=f"p{i}", input_tokens=2, output_tokens=20) for i in range(40)]
    rt = VllmRuntime(launcher=FAKE, metrics_period_s=0.05)
    started: list[tuple[int, int]] = []
    orig_add = rt.process_groups.add

    def add(pgid, proc=None):
        started.append((pgid, rt._server.key[0] if rt._server else -1))
        return orig_add(pgid, proc)

    rt.process_groups.add = add  # type: ignore[method-assign]
    cmds: list[list[str]] = []
    orig_cmd = vllm_mod.server_command
    vllm_mod.server_command = lambda *a, **k: cmds.append(orig_cmd(*a, **k)) or cmds[-1]  # type: ignore[assignment]
    try:
        summary = SweepRunner(prof, tmp_path / "run", runtime=rt, requests=reqs, allow_simulated=True).run()
    finally:
        vllm_mod.server_command = orig_cmd  # type: ignore[assignment]
    assert summary.failed == 0 and summary.completed == 4
    assert len(started) == 2, started  # one server per max_num_seqs, not per configuration
    assert all("--no-enable-prefix-caching" in c for c in cmds)
    assert [c[c.index("--max-num-seqs") + 1] for c in cmds] == ["4", "8"]
    for pgid, _ in started:
        assert not group_alive(pgid)
    assert rt._server is None
    live = (tmp_path / "run" / "live.jsonl").read_text()
    assert live.count("reusing the vLLM server") == 2
    # every configuration's log starts with the command line of the server that served it
    heads = [p.read_text().splitlines()[0] for p in (tmp_path / "run" / "logs").glob("*.log")]
    assert len(heads) == 4 and all(h.startswith("mle-tui: vLLM server command: ") for h in heads)


def _spy_keys(monkeypatch) -> list[str]:
    """Record every API key the runtime hands a server (through its environment)."""
    seen: list[str] = []
    orig = vllm_mod.server_env

    def spy(profile, api_key, *a, **k):
        seen.append(api_key)
        return orig(profile, api_key, *a, **k)

    monkeypatch.setattr(vllm_mod, "server_env", spy)
    return seen


def test_api_key_is_hex_and_goes_by_environment(tmp_path: Path, monkeypatch) -> None:
    """A hex key (never a flag, unchanged by quoting), in VLLM_API_KEY and not on the command
    line; the fake server, like vLLM, takes it from there (its requests are authorised)."""
    seen = _spy_keys(monkeypatch)
    cmds: list[list[str]] = []
    orig_cmd = vllm_mod.server_command
    monkeypatch.setattr(vllm_mod, "server_command", lambda *a, **k: cmds.append(orig_cmd(*a, **k)) or cmds[-1])
    rt = VllmRuntime(launcher=FAKE, metrics_period_s=0.05)
    res = rt.run(_ctx(tmp_path, _profile({"FAKE_STARTUP_S": "0.1", "FAKE_STEP_S": "0.001"}), n=2))
    assert all(r.ok for r in res.requests)
    assert len(seen) == 1 and all(c in "0123456789abcdef" for c in seen[0]) and len(seen[0]) >= 32
    assert not any(seen[0] in a for a in cmds[0]) and "--api-key" not in cmds[0]
    env = vllm_mod.server_env(_profile(), "k" * 32, [0], False)
    assert env["VLLM_API_KEY"] == "k" * 32


@pytest.mark.parametrize("arg", ["--host", "--port=9", "--api-key", "--api_key", "--api-key=x", "--api-k", "--hos"])
def test_extra_args_may_not_set_host_port_or_key(tmp_path: Path, arg: str) -> None:
    from mle_tui.core.errors import InputError

    prof = _profile(server=f'extra_args = ["{arg}", "1"]')
    with pytest.raises(InputError) as exc:
        VllmRuntime(launcher=FAKE).load_requests(prof, source="p.toml")
    line = str(exc.value)
    assert line.startswith("p.toml: server.extra_args: " + arg.split("=")[0]) and "\n" not in line
    vllm_mod.check_server_args(_profile(server='extra_args = ["--seed", "1", "--hf-token-x"]'))  # fine


@pytest.mark.parametrize(("arg", "field"), [
    ("--api-server-count", "api_server_count"), ("--api_server_count=4", "api_server_count"),
    ("--api-s", "api_server_count"), ("--stream-interval", "stream_interval"),
    ("--stream_interval=8", "stream_interval"), ("--stream-i", "stream_interval")])
def test_extra_args_name_the_field_that_sets_the_flag(arg: str, field: str) -> None:
    from mle_tui.core.errors import InputError

    with pytest.raises(InputError) as exc:
        vllm_mod.check_server_args(_profile(server=f'extra_args = ["{arg}", "4"]'), source="p.toml")
    line = str(exc.value)
    assert line.startswith("p.toml: server.extra_args: ") and line.endswith(f"set server.{field} instead")


def test_api_key_is_in_no_file_of_the_run_directory(tmp_path: Path, monkeypatch) -> None:
    """The fake logs its args and the key it got (as vLLM's "non-default args" line does, and
    worse); the key reaches no file of the run directory, nor log_tail, nor the forwarded lines;
    the log starts with the server's command line."""
    from mle_tui.core.runner import SweepRunner
    from mle_tui.core.store import RunStore

    seen = _spy_keys(monkeypatch)
    prof = decode_profile("""
name = "key"
task = "chat"
runtime = "vllm"
[model]
id = "fake"
weights = "dummy"
[dataset]
name = "synthetic"
[sweep]
max_num_seqs = 4
[steady_state]
min_window_s = 0.1
[server]
env = { FAKE_STARTUP_S = "0.1", FAKE_STEP_S = "0.003" }
[gpu]
simulated = true
""", "key.toml")
    reqs = [Request(id=i, prompt=f"p{i}", input_tokens=2, output_tokens=20) for i in range(12)]
    out = tmp_path / "run"
    summary = SweepRunner(prof, out, runtime=VllmRuntime(launcher=FAKE, metrics_period_s=0.05), requests=reqs,
                          allow_simulated=True).run()
    assert summary.failed == 0 and len(seen) == 1
    key = seen[0].encode()
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and not [p for p in files if key in p.read_bytes()]
    logs = list((out / "logs").glob("*.log"))
    assert len(logs) == 1
    text = logs[0].read_text()
    assert text.startswith("mle-tui: vLLM server command: FAKE_STARTUP_S=0.1 FAKE_STEP_S=0.003 VLLM_API_KEY=*** ")
    assert "--max-num-seqs 4" in text.splitlines()[0]
    assert "VLLM_API_KEY='***'" in text and "non-default args" in text  # the fake's lines, masked
    rec = RunStore(out).load_records()[0]
    assert rec.log_tail and not any(seen[0] in line for line in rec.log_tail)



def test_server_dies_with_a_sigkilled_runner(tmp_path: Path) -> None:
    """SIGKILL leaves no handler to run: the server must still go (PR_SET_PDEATHSIG)."""
    import signal

    proc = _start_runner(tmp_path)
    try:
        pgid = _server_pgid(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = group_alive(pgid)
        if alive:
            os.killpg(pgid, signal.SIGKILL)
        assert not alive, "the server outlived its SIGKILLed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
