"""GPU check of the in-process runtimes (issue 4). Run on an NVIDIA GPU node; not part of CI.

Runs, through :class:`SweepRunner` with NVML (Zeus) measuring the GPU:

* ``--part llm``: the transformers continuous-batching runtime with a Llama-3.1-8B-shaped model
  (dummy weights, normal(0, 0.02)), bf16, at max_num_seqs 64 and 128; synthetic prompts of
  64..512 random tokens, exactly 256 output tokens each (EOS disabled), 3 x 128 requests.
* ``--part diffusion``: the diffusers runtime with a Stable-Diffusion-2.1-shaped pipeline (dummy
  weights, bf16) at batch sizes 4 and 16 x 10 and 25 denoising steps, 768x768, PartiPrompts;
  1 warm-up + 3 measured batches each. ``--power-limits 400,700`` adds a power-limit axis
  (needs root or zeusd; every limit is restored afterwards); without it the limit is untouched.

Prints energy per request / per image, tokens/s or images/s, latency and average power per
configuration; records land in ``--out``. ``--quick`` shrinks both workloads for a smoke run;
``--simulate`` (with ``--llm-model tiny-llama --sd-model tiny-sd``) exercises the script on a
CPU box with the simulated GPU.

    python tests/gpu/run_inprocess_gpu.py --part llm --out /tmp/gpu-llm
    python tests/gpu/run_inprocess_gpu.py --part diffusion --out /tmp/gpu-sd --power-limits 400,700
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PROMPTS = [REPO.parent / "shared" / "data" / "PartiPrompts.tsv",
                   REPO / "tests" / "assets" / "partiprompts-sample.tsv"]


def llm_profile_toml(*, model: str, batch_sizes: list[int], num_requests: int, repeats: int,
                     output_tokens: int, min_window_s: float, simulate: bool) -> str:
    return f"""
name = "gpu-transformers-llama3.1-8b-dummy"
description = "transformers continuous batching, Llama-3.1-8B-shaped dummy model, fixed 256-token outputs"
task = "chat"
runtime = "transformers"

[model]
id = "{model}"
weights = "dummy"
dtype = "bfloat16"

[dataset]
name = "synthetic"
num_requests = {num_requests}
repeats = {repeats}
seed = 0
min_prompt_tokens = 64
max_prompt_tokens = 512
min_output_tokens = {output_tokens}
max_output_tokens = {output_tokens}

[sweep]
max_num_seqs = {batch_sizes}

[server]
max_model_len = 2048
gpu_memory_utilization = 0.85

[steady_state]
rule = "saturation"
min_window_s = {min_window_s}

[target]
metric = "tpot"
value = "100ms"

[gpu]
simulated = {str(simulate).lower()}
allow_simulated = {str(simulate).lower()}
"""


def diffusion_profile_toml(*, model: str, prompts: Path, batch_sizes: list[int], steps: list[int],
                           resolution: str | None, power_limits: list[int], batches: int,
                           simulate: bool) -> str:
    res = f'resolution = "{resolution}"\n' if resolution else ""
    pl = f"power_limit_w = {power_limits}\n" if power_limits else ""
    return f"""
name = "gpu-diffusers-sd2.1-dummy"
description = "diffusers text-to-image, Stable-Diffusion-2.1-shaped dummy pipeline, PartiPrompts"
task = "text-to-image"
runtime = "diffusers"

[model]
id = "{model}"
weights = "dummy"
dtype = "bfloat16"

[dataset]
name = "partiprompts"
path = "{prompts}"
num_requests = 256
seed = 0

[sweep]
batch_size = {batch_sizes}
num_inference_steps = {steps}
{res}{pl}
[load]
batches = {batches}
warmup_batches = 1

[target]
metric = "batch_latency"
value = "5s"

[gpu]
simulated = {str(simulate).lower()}
allow_simulated = {str(simulate).lower()}
"""


def run_profile(text: str, name: str, out: Path) -> list:
    """Run one profile through SweepRunner; returns its records (sorted by configuration)."""
    from mle_tui.core.profile import decode_profile
    from mle_tui.core.runner import SweepRunner
    from mle_tui.core.store import RunStore
    from mle_tui.tui.headless import ProgressPrinter, batches_per_config

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.toml"
    path.write_text(text)
    profile = decode_profile(text, str(path))
    printer = ProgressPrinter(sys.stderr, tty=False, batches_per_config=batches_per_config(profile))
    runner = SweepRunner(profile, out / "run", profile_path=str(path), listener=printer)
    t0 = time.monotonic()
    summary = runner.run()
    print(f"# {name}: {summary.completed} ok, {summary.invalid} invalid, {summary.failed} failed "
          f"in {time.monotonic() - t0:.0f} s; records in {out / 'run'}")
    return sorted(RunStore(out / "run").load_records(), key=lambda r: r.config_key)


def _f(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def print_llm(records: list) -> None:
    print("config                 status   J/request  J/token  out tok/s  TPOT ms  TTFT s  avg W   "
          "steady s  mean batch  GPU")
    for r in records:
        ss = r.steady_state
        tpot = r.latency.tpot.mean_s * 1e3 if r.latency.tpot and r.latency.tpot.mean_s is not None else None
        ttft = r.latency.ttft.mean_s if r.latency.ttft else None
        print(f"{r.config_key:22} {r.status:8} {_f(r.energy_per_request_j):>9}  {_f(r.energy_per_token_j, '.3f'):>7}"
              f"  {_f(r.throughput.output_tokens_per_s):>9}  {_f(tpot):>7}  {_f(ttft, '.2f'):>6}"
              f"  {_f(r.avg_power_w, '.0f'):>5}  {_f(ss.duration_s if ss else None):>8}"
              f"  {_f(ss.mean_batch if ss else None):>10}  {', '.join(r.hardware.gpu_names)}"
              f"{' (SIMULATED)' if r.simulated else ''}")
        for reason in r.reasons:
            print(f"    {reason}")
        for line in r.log_tail[:4]:
            print(f"    | {line}")


def print_diffusion(records: list) -> None:
    print("config                              status   J/image  batch s  images/s  avg W  limit W  GPU")
    for r in records:
        lat = r.latency.batch_latency.mean_s if r.latency.batch_latency else None
        limit = r.hardware.power_limit_w[0] if r.hardware.power_limit_w else None
        print(f"{r.config_key:35} {r.status:8} {_f(r.energy_per_image_j):>7}  {_f(lat, '.2f'):>7}"
              f"  {_f(r.throughput.images_per_s, '.2f'):>8}  {_f(r.avg_power_w, '.0f'):>5}"
              f"  {_f(limit, '.0f'):>7}  {', '.join(r.hardware.gpu_names)}{' (SIMULATED)' if r.simulated else ''}")
        measured = [b for b in r.batches if not b.warmup]
        if measured:
            print("    batches (J, s): " + ", ".join(f"{b.energy_j:.0f} J/{b.latency_s:.2f} s" for b in measured))
        for reason in r.reasons:
            print(f"    {reason}")


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("llm", "diffusion", "all"), default="all")
    p.add_argument("--out", type=Path, default=Path("/tmp/mle-tui-gpu-inprocess"))
    p.add_argument("--llm-model", default="llama-3.1-8b", help="shape name or dir with config.json")
    p.add_argument("--sd-model", default="sd-2.1", help="shape name (sd-2.1, sdxl, tiny-sd)")
    p.add_argument("--max-num-seqs", default="64,128")
    p.add_argument("--batch-sizes", default="4,16")
    p.add_argument("--steps", default="10,25")
    p.add_argument("--resolution", default="768x768", help="WIDTHxHEIGHT, or 'default'")
    p.add_argument("--power-limits", default="", help="e.g. 400,700 (W; needs root or zeusd)")
    p.add_argument("--prompts", type=Path, default=None, help="PartiPrompts TSV")
    p.add_argument("--num-requests", type=int, default=None, help="LLM requests before repeats (default 128)")
    p.add_argument("--repeats", type=int, default=None, help="LLM repeats (default 3)")
    p.add_argument("--output-tokens", type=int, default=None, help="LLM output tokens per request (default 256)")
    p.add_argument("--min-window", type=float, default=None, help="steady_state.min_window_s (default 20)")
    p.add_argument("--batches", type=int, default=None, help="measured diffusion batches (default 3)")
    p.add_argument("--quick", action="store_true", help="small workloads for a smoke run")
    p.add_argument("--simulate", action="store_true", help="simulated GPU (script check on CPU)")
    args = p.parse_args(argv)

    failed = 0
    if args.part in ("llm", "all"):
        mns = _ints(args.max_num_seqs)
        num, repeats, out_tokens, window = (128, 3, 256, 20.0)
        if args.quick:
            num, repeats, out_tokens, window = (max(mns), 2, 64, 2.0)
        num = args.num_requests or num
        repeats = args.repeats or repeats
        out_tokens = args.output_tokens or out_tokens
        window = args.min_window if args.min_window is not None else window
        text = llm_profile_toml(model=args.llm_model, batch_sizes=mns, num_requests=num, repeats=repeats,
                                output_tokens=out_tokens, min_window_s=window, simulate=args.simulate)
        records = run_profile(text, "llm", args.out / "llm")
        print_llm(records)
        failed += sum(r.status == "failed" for r in records)
    if args.part in ("diffusion", "all"):
        prompts = args.prompts or next((c for c in DEFAULT_PROMPTS if c.exists()), DEFAULT_PROMPTS[-1])
        res = None if args.resolution == "default" else args.resolution
        batches = args.batches or (2 if args.quick else 3)
        text = diffusion_profile_toml(model=args.sd_model, prompts=prompts.resolve(),
                                      batch_sizes=_ints(args.batch_sizes), steps=_ints(args.steps),
                                      resolution=res, power_limits=_ints(args.power_limits),
                                      batches=batches, simulate=args.simulate)
        records = run_profile(text, "diffusion", args.out / "diffusion")
        print_diffusion(records)
        failed += sum(r.status == "failed" for r in records)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
