"""Benchmark (not a test): mle-tui's vLLM client against ``vllm bench serve`` on ONE server.

Starts one real vLLM server (the CPU build: tests/assets/tiny-llama with dummy weights,
``VLLM_CPU_KVCACHE_SPACE=1``), then alternates ``vllm bench serve`` and mle-tui's client
(:func:`mle_tui.core.runtimes.vllm_client.drive`: the load generator with the 0.5 s ``/metrics``
poll, as the runtime runs it) on the same requests (the tiny-llama-cpu profile's ShareGPT
prompts), all sent at t = 0 with the same ``max_tokens``, ``ignore_eos`` and temperature 0.
Prints output throughput and mean TTFT / TPOT / E2E of each run, the means per client and
their ratio (mle-tui / vLLM), and mle-tui's submission spread, event-loop lag and poll bytes.

``vllm bench serve`` runs through its module API (``vllm.benchmarks.serve``), in a child process.

    PYTHONPATH=.pyshim python3 tests/bench_client.py [--rounds 2] [--num 128] [--max-num-seqs 16]
    PYTHONPATH=.pyshim python3 tests/bench_client.py --url http://127.0.0.1:PORT --api-key KEY

Goal (issue 16): output throughput and mean TTFT within 3 % of ``vllm bench serve`` on the CPU
server. Run one at a time; about 4-6 minutes on a 2-core box (server start included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from mle_tui.core.clock import WallClock
from mle_tui.core.procgroup import kill_group
from mle_tui.core.profile import load_profile
from mle_tui.core.runtimes.loadgen import LoadSettings
from mle_tui.core.runtimes.vllm import VllmRuntime, free_port
from mle_tui.core.runtimes.vllm_client import bundling, drive

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "tiny-llama-cpu.toml"
MODEL = ROOT / "tests" / "assets" / "tiny-llama"


BENCH_MAIN = ("import sys\nfrom vllm.utils.argparse_utils import FlexibleArgumentParser\n"
              "from vllm.benchmarks.serve import add_cli_args, main\n"
              "p = FlexibleArgumentParser()\nadd_cli_args(p)\nmain(p.parse_args(sys.argv[1:]))\n")


def start_server(max_num_seqs: int, api_key: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL),
           "--host", "127.0.0.1", "--port", str(port), "--load-format", "dummy", "--dtype", "bfloat16",
           "--max-model-len", "2048", "--max-num-seqs", str(max_num_seqs), "--no-enable-prefix-caching"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_API_KEY": api_key, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; see {log_path}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() - t0 > 600:
            raise SystemExit("server not ready after 600 s")
        time.sleep(0.5)
    print(f"server ready after {time.monotonic() - t0:.0f} s (max_num_seqs {max_num_seqs})", flush=True)
    return proc, url


def run_vllm_bench(url: str, api_key: str, dataset: Path, num: int, workdir: Path, i: int) -> dict:
    name = f"vllm_{i}.json"
    # `vllm bench serve` itself: its module API (the console script needs metadata named "vllm",
    # which the CPU build, installed as vllm-cpu, lacks)
    cmd = [sys.executable, "-c", BENCH_MAIN, "--backend", "vllm",
           "--base-url", url, "--model", str(MODEL), "--tokenizer", str(MODEL),
           "--dataset-name", "custom", "--dataset-path", str(dataset), "--skip-chat-template", "--custom-output-len", "-1",
           "--num-prompts", str(num), "--request-rate", "inf", "--ignore-eos", "--temperature", "0",
           "--disable-tqdm", "--save-result", "--save-detailed", "--result-dir", str(workdir),
           "--result-filename", name, "--percentile-metrics", "ttft,tpot,itl,e2el"]
    out = subprocess.run(cmd, env={**os.environ, "OPENAI_API_KEY": api_key}, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"vllm bench serve failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    res = json.loads((workdir / name).read_text())
    starts = sorted(res["start_times"])
    return {
        "tok_s": res["output_throughput"], "ttft": res["mean_ttft_ms"] / 1e3, "tpot": res["mean_tpot_ms"] / 1e3,
        "e2e": res["mean_e2el_ms"] / 1e3, "tokens": res["total_output_tokens"], "dur": res["duration"],
        "spread": starts[min(127, len(starts) - 1)] - starts[0], "failed": res["failed"],
        "one_chunk": sum(1 for o, itl in zip(res["output_lens"], res["itls"]) if o and o > 1 and not itl),
    }


def run_mle(url: str, api_key: str, requests: list, batch: int) -> dict:
    clock = WallClock()
    settings = LoadSettings(base_url=url, model=str(MODEL), api_key=api_key, ignore_eos=True,
                            default_max_tokens=128)
    lag = [0.0]

    async def main():
        async def monitor() -> None:
            while True:
                t = time.perf_counter()
                await asyncio.sleep(0.005)
                lag[0] = max(lag[0], time.perf_counter() - t - 0.005)

        mon = asyncio.create_task(monitor())
        t0 = clock.now_s()
        try:
            load, server_tokens, poller = await drive(settings, requests, clock, max_num_seqs=batch)
        finally:
            mon.cancel()
        return t0, load, server_tokens, poller

    t_start, load, server_tokens, poller = asyncio.run(main())
    ok = [r for r in load.rows if r.ok]
    sends = sorted(r.send_s for r in load.rows)
    dur = max(r.end_s for r in ok) - min(sends)  # first send to last token (as the bench's duration)
    tpots = [r.tpot_s for r in ok if r.tpot_s is not None]
    b = bundling(load)
    return {
        "tok_s": load.output_tokens / dur, "ttft": statistics.fmean(r.ttft_s for r in ok),
        "tpot": statistics.fmean(tpots), "e2e": statistics.fmean(r.e2e_s for r in ok),
        "tokens": load.output_tokens, "dur": dur, "spread": sends[min(127, len(sends) - 1)] - sends[0],
        "failed": len(load.rows) - len(ok), "lag": lag[0], "server_tokens": server_tokens,
        "poll_bytes": poller.bytes_total / max(1, poller.scrapes), "filtered": poller.filtered,
        "bundled_req": b.requests, "bundled_tok": b.tokens, "exact": b.exact_requests,
        "one_chunk": sum(1 for r in ok if r.output_tokens > 1 and r.itl_count == 0),
    }


def fmt(tag: str, r: dict) -> str:
    extra = ""
    if "lag" in r:
        extra = (f" loop-lag max {r['lag'] * 1e3:.0f} ms, poll {r['poll_bytes']:.0f} B"
                 f"{'' if r['filtered'] else ' (unfiltered)'}, bundled {r['bundled_req']} req / "
                 f"{r['bundled_tok']} tok, server tokens {r['server_tokens']}")
    return (f"{tag:7s} {r['tok_s']:7.1f} tok/s  TTFT {r['ttft'] * 1e3:7.1f} ms  TPOT {r['tpot'] * 1e3:6.2f} ms  "
            f"E2E {r['e2e']:6.3f} s  ({r['tokens']} tok in {r['dur']:.2f} s, 128 submitted in "
            f"{r['spread'] * 1e3:.0f} ms, one-chunk {r['one_chunk']}, failed {r['failed']}){extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="alternations of the two clients (2-3)")
    ap.add_argument("--num", type=int, default=512,
                    help="requests per run (the profile's 160, cycled); the submit spread is the first 128's")
    ap.add_argument("--max-num-seqs", type=int, default=16)
    ap.add_argument("--url", help="use this running server instead of starting one")
    ap.add_argument("--api-key", default=None)
    args = ap.parse_args()

    profile = load_profile(PROFILE)
    import msgspec

    base = VllmRuntime().load_requests(profile, base_dir=PROFILE.parent)
    requests = [msgspec.structs.replace(base[i % len(base)], id=i) for i in range(args.num)]
    assert all(r.prompt is not None for r in requests)
    work = Path(tempfile.mkdtemp(prefix="bench_client_"))
    dataset = work / "requests.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": r.prompt, "output_tokens": r.output_tokens}) + "\n"
                               for r in requests))
    print(f"{args.num} requests, {sum(r.output_tokens for r in requests)} output tokens, rate inf, "
          f"ignore_eos, temperature 0; files in {work}", flush=True)
    proc = None
    api_key = args.api_key or secrets.token_hex(16)
    try:
        if args.url:
            url = args.url
        else:
            proc, url = start_server(args.max_num_seqs, api_key, work / "server.log")
        run_mle(url, api_key, requests[:8], args.max_num_seqs)  # warm-up (not counted)
        got: dict[str, list[dict]] = {"vllm": [], "mle-tui": []}
        for i in range(args.rounds):
            for tag in (("vllm", "mle-tui") if i % 2 == 0 else ("mle-tui", "vllm")):
                r = (run_vllm_bench(url, api_key, dataset, args.num, work, i) if tag == "vllm"
                     else run_mle(url, api_key, requests, args.max_num_seqs))
                got[tag].append(r)
                print(fmt(tag, r), flush=True)
        print("means over rounds (ratio = mle-tui / vllm bench serve):")
        for key, label in (("tok_s", "output tok/s"), ("ttft", "mean TTFT s"), ("tpot", "mean TPOT s"),
                           ("e2e", "mean E2E s"), ("spread", "128 submitted in s")):
            v = statistics.fmean(r[key] for r in got["vllm"])
            m = statistics.fmean(r[key] for r in got["mle-tui"])
            print(f"  {label:16s} vllm {v:10.4f}  mle-tui {m:10.4f}  ratio {m / v if v else float('nan'):.3f}")
    finally:
        if proc is not None:
            kill_group(proc.pid, proc, 5.0)


if __name__ == "__main__":
    main()
