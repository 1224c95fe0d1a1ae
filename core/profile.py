"""Benchmark profiles: TOML decoded by msgspec into validated Structs.

A bad profile raises :class:`~mle_tui.core.errors.InputError` naming the file, the field path
and the problem; the CLI prints that one line and exits with status 2. The sections of the
measurement method (``[steady_state]``, ``[target]``, ``[cost]``) and the duration syntax are in
:mod:`.profile_method`, and import from here too.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from .adaptive.spec import AdaptiveSpec, Strategy
from .config import Config
from .errors import InputError
from .profile_method import (CostSpec, LatencyMetric, Section, SteadyRule, SteadySpec,  # noqa: F401 (re-exported)
                             TargetSpec, parse_duration_s)
from .sweep import SweepSyntaxError, parse_axis

Runtime = Literal["vllm", "transformers", "diffusers", "sim"]
Task = Literal["chat", "code", "text-to-image", "visual-chat", "text-to-video", "image-to-video"]
#: Diffusion tasks whose output is a video (eq. 1 per video), and all diffusion tasks (eq. 1).
VIDEO_TASKS = ("text-to-video", "image-to-video")
DIFFUSION_TASKS = ("text-to-image", *VIDEO_TASKS)
AxisValue = int | float | str | list[int | float | str]

#: The latency metric each task is judged by (paper §3.3).
DEFAULT_METRIC: dict[str, LatencyMetric] = {
    "chat": "tpot",
    "code": "e2e",
    "text-to-image": "batch_latency",
    "visual-chat": "tpot",
    "text-to-video": "batch_latency",
    "image-to-video": "batch_latency",
}
#: Tasks served by an LLM engine (iteration-level batching, eq. 2).
LLM_TASKS = ("chat", "code", "visual-chat")


class ModelSpec(Section):
    #: Hugging Face id or local directory.
    id: str
    #: ``pretrained`` loads real weights; ``dummy`` builds the real architecture with random
    #: weights (see README "Dummy weights": normal(0, 0.02) for in-process runtimes,
    #: vLLM's own dummy loader, uniform(-1e-3, 1e-3), for vLLM).
    weights: Literal["pretrained", "dummy"] = "pretrained"
    #: Tokenizer to use when the model directory has none (HF id or local dir).
    tokenizer: str | None = None
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = "bfloat16"

    def __post_init__(self) -> None:
        if not self.id.strip():
            raise ValueError("model id must not be empty")


class DatasetSpec(Section):
    #: ``sharegpt``, ``humaneval``, ``partiprompts``, ``jsonl`` or ``synthetic``.
    #: ``synthetic-images`` (visual chat): seeded synthetic images with ShareGPT prompts.
    name: Literal["sharegpt", "humaneval", "partiprompts", "jsonl", "synthetic", "synthetic-images"]
    #: File path (or HF dataset id) overriding the packaged copy.
    path: str | None = None
    num_requests: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 512
    #: Repeat the sampled requests this many times (N >> max_num_seqs).
    repeats: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    #: LLM sweeps: at least this many requests per unit of ``max_num_seqs`` (N >= k x B), by
    #: cycling the sampled requests, so every batch size gets a long steady state without
    #: over-long runs at small B. 0 = off (N = num_requests x repeats for every configuration).
    requests_per_seq: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0
    seed: int = 0
    min_prompt_tokens: Annotated[int, msgspec.Meta(ge=1)] = 4
    max_prompt_tokens: Annotated[int, msgspec.Meta(ge=1)] = 1024
    min_output_tokens: Annotated[int, msgspec.Meta(ge=1)] = 4
    max_output_tokens: Annotated[int, msgspec.Meta(ge=1)] = 1024
    #: Visual chat, ``synthetic-images``: images in each request's user message.
    images_per_request: Annotated[int, msgspec.Meta(ge=1, le=16)] = 1

    def __post_init__(self) -> None:
        if self.min_prompt_tokens > self.max_prompt_tokens:
            raise ValueError("min_prompt_tokens: is above max_prompt_tokens")
        if self.min_output_tokens > self.max_output_tokens:
            raise ValueError("min_output_tokens: is above max_output_tokens")
        if self.name == "jsonl" and not self.path:
            raise ValueError("path: a jsonl dataset needs a path")

    #: Image-to-video: first frames for requests without images. ``"synthetic"``: seeded
    #: synthetic images (:mod:`.image_sets`) at the configuration's resolution, one per prompt.
    first_frames: Literal["synthetic"] | None = None


class SweepSpec(Section):
    """Sweep axes. Each takes a number, a list, or a range such as ``"8..256 x2"``."""

    max_num_seqs: AxisValue | None = None
    tensor_parallel: AxisValue = 1
    pipeline_parallel: AxisValue = 1
    #: GPU power limits to sweep, in W. Omitted: the limit is left untouched.
    power_limit_w: AxisValue | None = None
    batch_size: AxisValue | None = None
    num_inference_steps: AxisValue | None = None
    #: ``"768x768"`` strings or a list of them.
    resolution: str | list[str] | None = None
    #: Visual chat: input image sizes, ``"336x336"`` or a list (every request's images are
    #: resized to each); omitted: the dataset's own sizes.
    image_size: str | list[str] | None = None
    #: Video tasks: frames per video and the pipeline's ``fps`` (where it takes one, SVD);
    #: omitted: the model's default.
    num_frames: AxisValue | None = None
    fps: AxisValue | None = None
    #: "grid": every configuration; "adaptive": search for the recommendation, stopping each
    #: configuration once its answer is known (settings in ``[adaptive]``).
    strategy: Strategy = "grid"

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "tensor_parallel", "pipeline_parallel", "power_limit_w",
                     "batch_size", "num_inference_steps", "num_frames", "fps"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                values = parse_axis(value)
            except SweepSyntaxError as exc:
                raise ValueError(f"sweep.{name}: {exc}") from None
            if any(v <= 0 or not float(v).is_integer() for v in values):
                raise ValueError(f"sweep.{name}: values must be positive integers")
        for res in self.resolutions():
            if _parse_resolution(res) is None:
                raise ValueError(f"sweep.resolution: {res!r} is not WIDTHxHEIGHT")
        for res in self.image_sizes():
            if _parse_resolution(res) is None:
                raise ValueError(f"sweep.image_size: {res!r} is not WIDTHxHEIGHT")

    def axis(self, name: str) -> list[int]:
        value = getattr(self, name)
        if value is None:
            return []
        return [int(v) for v in parse_axis(value)]

    def resolutions(self) -> list[str]:
        if self.resolution is None:
            return []
        return [self.resolution] if isinstance(self.resolution, str) else list(self.resolution)

    def image_sizes(self) -> list[str]:
        if self.image_size is None:
            return []
        return [self.image_size] if isinstance(self.image_size, str) else list(self.image_size)


def _parse_resolution(text: str) -> tuple[int, int] | None:
    m = re.match(r"^\s*(\d+)\s*[x×]\s*(\d+)\s*$", text)
    if not m or int(m[1]) <= 0 or int(m[2]) <= 0:
        return None
    return int(m[1]), int(m[2])


class ServerSpec(Section):
    """vLLM server options (ignored by in-process runtimes except where noted)."""

    max_model_len: Annotated[int, msgspec.Meta(ge=16)] | None = None
    gpu_memory_utilization: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    enforce_eager: bool = False
    #: vLLM API server processes in front of the one engine (``vllm serve --api-server-count``).
    #: More than one launches ``vllm serve`` (the only entry point that starts them) instead of
    #: the ``vllm.entrypoints.openai.api_server`` module. On the H200 (2026-11-30) four did not
    #: keep the output up with the GPU at B = 256 (one of them carried the streams); see
    #: ``stream_interval``.
    api_server_count: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    #: Output tokens per streamed chunk (``--stream-interval``; the first token goes at once, the
    #: last with the finish). Streaming a chunk per token costs the API server and this client
    #: Python work per token; past some 12-14 k tokens/s on an H200 (Llama-3.1-8B, B >= 256) the
    #: output fell seconds behind the GPU and the record failed its ``output_lag`` gate; 8 kept
    #: pace at B = 512. TTFT and TPOT stay exact (first and last token); per-token gaps inside a
    #: chunk are not seen, so inter-token latency reads per chunk.
    stream_interval: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    extra_args: list[str] = []
    env: dict[str, str] = {}
    startup_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 900.0
    #: Seconds without a log line, while requests are outstanding, after which the server is
    #: declared hung.
    stall_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    #: Keep one server across consecutive configurations that differ only in the GPU power
    #: limit (the limit is a GPU setting, not a server flag). When the sweep has several power
    #: limits this also passes ``--no-enable-prefix-caching`` to every server of the run, so a
    #: reused server's cache cannot make a later configuration look cheaper.
    reuse_across_power_limits: bool = True
    #: Opt-in: one server, started with the sweep's largest max_num_seqs, serves every
    #: max_num_seqs B of the sweep with the client's concurrency capped at B (fewer server
    #: starts). Prefix caching is off then too. The record names which way it ran.
    reuse_across_max_num_seqs: bool = False


class LoadSpec(Section):
    #: Requests per second; ``inf`` (default) submits everything at t = 0 (the paper's setting).
    request_rate: float = math.inf
    #: Gamma shape for arrivals (1.0 = Poisson).
    burstiness: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    #: Client-side concurrency cap; 0 = none.
    max_concurrency: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Diffusion: measured batches per configuration (after one warm-up batch).
    batches: Annotated[int, msgspec.Meta(ge=1)] = 5
    warmup_batches: Annotated[int, msgspec.Meta(ge=0)] = 1

    def __post_init__(self) -> None:
        if not self.request_rate > 0:
            raise ValueError("request_rate: must be positive (inf = all at once)")


class GpuSpec(Section):
    #: GPU indices to use (first ``tensor_parallel × pipeline_parallel`` of them per config).
    indices: list[Annotated[int, msgspec.Meta(ge=0)]] | None = None
    #: Allow the simulated GPU when no NVML GPU can be read.
    allow_simulated: bool = False
    #: Force the simulated GPU even where NVML works (demo, tests).
    simulated: bool = False


class SimSpec(Section):
    """Parameters of the simulated GPU and the ``sim`` runtime (a test double and demo)."""

    gpu_name: str = "Simulated H100 SXM"
    tdp_w: Annotated[float, msgspec.Meta(gt=0)] = 700.0
    idle_w: Annotated[float, msgspec.Meta(gt=0)] = 75.0
    #: Run on the wall clock (demo) instead of a virtual clock (fast, for tests).
    realtime: bool = False
    #: Speed-up of the virtual clock when ``realtime``; 1.0 = wall-clock speed.
    time_scale: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    seed: int = 0
    #: GPUs of the simulated node (default: as many as the sweep uses); the others are sampled
    #: as the node's idle GPUs.
    num_gpus: Annotated[int, msgspec.Meta(ge=1, le=64)] | None = None
    #: Positions within each configuration's GPUs that the sim runtime leaves idle: a test
    #: double for a server mapped onto the wrong devices.
    idle_gpus: list[Annotated[int, msgspec.Meta(ge=0)]] = []


class OutputSpec(Section):
    """What a run keeps besides records and traces."""

    #: Diffusion: save every measured batch's images / videos under ``media/<config>/`` in the
    #: run directory (outside the energy windows: after each batch's end mark).
    save_media: bool = False


class ClusterSpec(Section):
    """Where the sweep runs (not what it measures: a resume may move it). Empty: this host."""

    #: Ray cluster address (``auto``: the cluster this host belongs to; ``HOST:PORT``); or
    #: ``mle-tui run PROFILE --ray ADDRESS``. Needs ``pip install 'mle-tui[ray]'``.
    ray_address: str = ""
    #: A node agent that has not heard from the driver for this long stops, restores its
    #: node's power limits and exits, s.
    lease_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0


class Profile(Section):
    name: str
    task: Task
    runtime: Runtime
    model: ModelSpec
    dataset: DatasetSpec
    sweep: SweepSpec
    description: str = ""
    server: ServerSpec = msgspec.field(default_factory=ServerSpec)
    load: LoadSpec = msgspec.field(default_factory=LoadSpec)
    steady_state: SteadySpec = msgspec.field(default_factory=SteadySpec)
    target: TargetSpec = msgspec.field(default_factory=TargetSpec)
    cost: CostSpec = msgspec.field(default_factory=CostSpec)
    gpu: GpuSpec = msgspec.field(default_factory=GpuSpec)
    sim: SimSpec = msgspec.field(default_factory=SimSpec)
    output: OutputSpec = msgspec.field(default_factory=OutputSpec)
    adaptive: AdaptiveSpec = msgspec.field(default_factory=AdaptiveSpec)
    cluster: ClusterSpec = msgspec.field(default_factory=ClusterSpec)

    def __post_init__(self) -> None:
        llm = self.task in LLM_TASKS
        if llm and self.runtime == "diffusers":
            raise ValueError(f"runtime: diffusers cannot serve task {self.task!r}")
        if not llm and self.runtime in ("vllm", "transformers"):
            raise ValueError(f"runtime: {self.runtime} cannot serve task {self.task!r}")
        if llm and self.sweep.max_num_seqs is None:
            raise ValueError("sweep.max_num_seqs: required for LLM tasks")
        if not llm and self.sweep.batch_size is None:
            raise ValueError(f"sweep.batch_size: required for {self.task}")
        if not llm and self.sweep.num_inference_steps is None:
            raise ValueError(f"sweep.num_inference_steps: required for {self.task}")
        from .profile_checks import check_profile

        check_profile(self)

    @property
    def is_llm(self) -> bool:
        return self.task in LLM_TASKS

    @property
    def is_video(self) -> bool:
        return self.task in VIDEO_TASKS

    def latency_metric(self) -> LatencyMetric:
        return self.target.metric or DEFAULT_METRIC[self.task]

    def configs(self) -> list[Config]:
        """Expand the sweep into configurations, in a deterministic order."""
        s = self.sweep
        res = [_parse_resolution(r) for r in s.resolutions()] or [None]
        img = [f"{w}x{h}" for w, h in (_parse_resolution(r) for r in s.image_sizes())] or [None]
        axes = [
            s.axis("max_num_seqs") or [None],
            s.axis("batch_size") or [None],
            s.axis("num_inference_steps") or [None],
            res,
            s.axis("num_frames") or [None],
            s.axis("fps") or [None],
            s.axis("tensor_parallel") or [1],
            s.axis("pipeline_parallel") or [1],
            s.axis("power_limit_w") or [None],
        ]
        out = []
        for size, (mns, bs, steps, wh, frames, fps, tp, pp, pl) in itertools.product(img, itertools.product(*axes)):
            out.append(
                Config(
                    max_num_seqs=mns,
                    batch_size=bs,
                    num_inference_steps=steps,
                    width=wh[0] if wh else None,
                    height=wh[1] if wh else None,
                    tensor_parallel=tp,
                    pipeline_parallel=pp,
                    power_limit_w=pl,
                    image_size=size,
                    num_frames=frames,
                    fps=fps,
                )
            )
        return out


def _field_path(message: str) -> tuple[str, str]:
    """Split msgspec's "... - at `$.a.b`" into (field path, problem)."""
    m = re.search(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", message, re.S)
    problem = (m["msg"] if m else message).strip()
    path = (m["path"] or "").lstrip(".") if m else ""
    # Our own __post_init__ messages start with "field.path: problem".
    inner = re.match(r"^([a-z_][a-z0-9_.]*): (.*)$", problem, re.S)
    if inner:
        sub = inner[1]
        path = sub if (not path or sub == path or sub.startswith(path + ".")) else f"{path}.{sub}"
        problem = inner[2]
    unknown = re.match(r"^Object contains unknown field `?([^`]+)`?$", problem)
    if unknown:
        path = f"{path}.{unknown[1]}" if path else unknown[1]
        problem = "unknown field"
    problem = problem.replace("`", "")
    return path or "(top level)", " ".join(problem.split())


def decode_profile(data: bytes | str, source: str = "<profile>") -> Profile:
    """Decode TOML text into a :class:`Profile`, raising a one-line :class:`InputError`."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        return msgspec.toml.decode(raw, type=Profile)
    except msgspec.ValidationError as exc:
        path, problem = _field_path(str(exc))
        raise InputError(source, path, problem) from None
    except msgspec.DecodeError as exc:
        raise InputError(source, "(syntax)", " ".join(str(exc).split())) from None


def load_profile(path: str | Path) -> Profile:
    """Load a profile file. A missing or unreadable file is an :class:`InputError`."""
    from .safe_io import read_input

    p = Path(path)
    data = read_input(p, what="profile file", max_bytes=4 * 2**20, missing="no such profile file")
    return decode_profile(data, str(p))
