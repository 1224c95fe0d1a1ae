"""The vLLM server process's side: its command line and environment, the flags mle-tui owns,
model / tokenizer resolution, and the log reader that masks secrets.

The API key goes to the server as ``VLLM_API_KEY`` (vLLM reads it when ``--api-key`` is
absent), never on the command line; every line the server prints has the key (and any
``server.env`` value whose name says it is a secret) replaced by ``***`` before it reaches the
log file, ``on_log`` or the tail.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from ..power.visible import child_visible_devices
from ..profile import Profile

#: Files whose presence means a model directory carries its own tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json",
                   "spiece.model", "tiktoken.model")


LOG_TAIL_LINES = 50


#: ``vllm serve`` for a vLLM of any distribution name (several API servers need it).
SERVE_SCRIPT = Path(__file__).with_name("vllm_serve.py")

#: Server flags mle-tui sets itself; ``server.extra_args`` may not set them.
RESERVED_FLAGS = ("--host", "--port", "--api-key", "--api-server-count", "--stream-interval")
#: ... and the profile field that sets one of them, where there is one.
FLAG_FIELDS = {"--api-server-count": "server.api_server_count", "--stream-interval": "server.stream_interval"}


MASK = "***"


def _env_secrets(profile: Profile) -> list[str]:
    """Values of ``server.env`` entries whose names say they are secrets (masked in logs)."""
    return [v for k, v in profile.server.env.items()
            if len(v) >= 8 and any(w in k.upper() for w in ("KEY", "TOKEN", "SECRET", "PASSWORD"))]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def resolve_model(model_id: str, profile_dir: Path | None, field: str | None = None) -> str:
    """A model id that names a local directory, made absolute: a relative path is looked up
    next to the profile file first, then from the working directory. Anything else (a Hugging
    Face id) is returned unchanged. With ``field`` (``model.id``, ``model.tokenizer``), an id
    written as a path (absolute, ``./``, ``../``, ``~``) that is no directory is an InputError
    naming it (not a hub lookup of a path, which fails with "Repo id must be in the form ...")."""
    p = Path(model_id).expanduser()
    explicit = p.is_absolute() or model_id.startswith(("./", "../", "~"))
    if field is not None and explicit:
        found = p.is_dir() or (not p.is_absolute() and profile_dir is not None and (profile_dir / p).is_dir())
        if not found:
            raise InputError("", field, f"{model_id}: no such model directory")
    if p.is_absolute():
        return str(p)
    if profile_dir is not None and (profile_dir / p).is_dir():
        return str((profile_dir / p).resolve())
    if p.is_dir():
        return str(p.resolve())
    return model_id


def has_tokenizer(model: str) -> bool:
    """False only for a local model directory with no tokenizer files."""
    p = Path(model)
    if not p.is_dir():
        return True
    return any((p / name).exists() for name in TOKENIZER_FILES)


def model_vocab_size(model: str) -> int | None:
    try:
        cfg = json.loads((Path(model) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    v = cfg.get("vocab_size") if isinstance(cfg, dict) else None
    if v is None and isinstance(cfg, dict):
        v = (cfg.get("text_config") or {}).get("vocab_size")
    return int(v) if isinstance(v, int) and v > 0 else None


def server_command(
    profile: Profile, *, model: str, max_num_seqs: int, tensor_parallel: int, pipeline_parallel: int,
    port: int, tokenizer: str | None, skip_tokenizer_init: bool, python: str,
    use_console_script: bool, launcher: list[str] | None = None,
) -> list[str]:
    """The vLLM server command line for one configuration (the API key goes by environment,
    see :func:`server_env`). ``launcher`` replaces the program part (``vllm serve`` /
    ``python -m vllm.entrypoints.openai.api_server``), e.g. for a fake."""
    s = profile.server
    if launcher:
        head = [*launcher, "--model", model]
    elif use_console_script:
        head = ["vllm", "serve", model]
    elif s.api_server_count > 1:  # the api_server module runs one API server whatever the flag says
        head = [python, str(SERVE_SCRIPT), model]
    else:
        head = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model]
    if s.api_server_count > 1:
        head += ["--api-server-count", str(s.api_server_count)]
    cmd = [
        *head,
        "--host", "127.0.0.1", "--port", str(port),
        "--max-num-seqs", str(max_num_seqs),
        "--tensor-parallel-size", str(tensor_parallel),
        "--pipeline-parallel-size", str(pipeline_parallel),
    ]
    if s.max_model_len is not None:
        cmd += ["--max-model-len", str(s.max_model_len)]
    if s.gpu_memory_utilization is not None:
        cmd += ["--gpu-memory-utilization", str(s.gpu_memory_utilization)]
    if profile.model.weights == "dummy":
        cmd += ["--load-format", "dummy"]
    if profile.model.dtype != "auto":
        cmd += ["--dtype", profile.model.dtype]
    if s.enforce_eager:
        cmd.append("--enforce-eager")
    if s.stream_interval > 1:
        cmd += ["--stream-interval", str(s.stream_interval)]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    elif skip_tokenizer_init:
        cmd.append("--skip-tokenizer-init")
    if reuses_servers(profile):
        cmd.append("--no-enable-prefix-caching")
    cmd += list(s.extra_args)
    return cmd


def reserved_flag(arg: str) -> str | None:
    """The reserved flag that ``arg`` sets, if any: exact, ``--flag=value``, the underscore
    spelling vLLM's parser accepts, or an argparse abbreviation (``--api-k``)."""
    if not arg.startswith("--"):
        return None
    flag = "--" + arg[2:].split("=", 1)[0].replace("_", "-")
    for name in RESERVED_FLAGS:
        if flag == name or (len(flag) > 3 and name.startswith(flag)):
            return name
    return None


def check_server_args(profile: Profile, source: str = "profile") -> None:
    """``server.extra_args`` may not set the host, port or API key (mle-tui owns them): one-line
    :class:`InputError` otherwise."""
    for arg in profile.server.extra_args:
        name = reserved_flag(arg)
        if name in FLAG_FIELDS:
            raise InputError(source, "server.extra_args",
                             f"{arg.split('=', 1)[0]} is set by mle-tui ({name}); set {FLAG_FIELDS[name]} instead")
        if name is not None:
            raise InputError(source, "server.extra_args",
                             f"{arg.split('=', 1)[0]} is set by mle-tui ({name}); remove it")


def server_env(profile: Profile, api_key: str, gpu_indices: list[int] | None, simulated: bool) -> dict[str, str]:
    """The server's environment: ours, the profile's ``server.env``, and the API key as
    ``VLLM_API_KEY`` (vLLM reads it when ``--api-key`` is absent; it never shows in ``ps``)."""
    env = dict(os.environ)
    env.update(profile.server.env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if gpu_indices and "CUDA_VISIBLE_DEVICES" not in profile.server.env and not simulated:
        # our indices count the GPUs this process sees: the child gets their entries
        env["CUDA_VISIBLE_DEVICES"] = child_visible_devices(gpu_indices)
        env["CUDA_DEVICE_ORDER"] = profile.server.env.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    env["VLLM_API_KEY"] = api_key
    from ..cluster.ray_env import child_env  # vLLM imports Ray where installed (amdsmi guard)

    return child_env(env)


def command_header(cmd: list[str], profile: Profile) -> str:
    """The line that heads a configuration's server log: command line and the environment the
    profile sets (secrets masked)."""
    env = [f"{k}={shlex.quote(v)}" for k, v in sorted(profile.server.env.items()) if k != "VLLM_API_KEY"]
    return " ".join(["mle-tui: vLLM server command:", *env, f"VLLM_API_KEY={MASK}", shlex.join(cmd)])


#: Access-log lines caused by our own probes: they say nothing about engine progress.
_OWN_PROBES = re.compile(rb'"GET /(metrics|health|v1/models)\b[^" ]* HTTP')


class _ServerLog:
    """Reads the server's merged stdout/stderr in a thread: file, callback, tail, and the time
    of the last line that is not an access-log line of our own probes. Every occurrence of a
    secret (the API key) is replaced by ``***`` before a line goes anywhere. ``header`` is
    written first to each log file (the command line)."""

    def __init__(self, proc: subprocess.Popen, path: Path, on_log: Callable[[str], None],
                 secrets_: list[str] | None = None, header: str | None = None) -> None:
        self._proc = proc
        self._on_log = on_log
        self._secrets = [s.encode() for s in (secrets_ or []) if s]
        self.header = header
        self._fh = self._open(path)
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self.last_line_monotonic = time.monotonic()
        self._thread = threading.Thread(target=self._read, name="vllm-log", daemon=True)
        self._thread.start()

    def _open(self, path: Path):  # noqa: ANN202
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "ab")
        if self.header:
            fh.write(self.mask(self.header.encode()) + b"\n")
            fh.flush()
        return fh

    def mask(self, raw: bytes) -> bytes:
        for s in self._secrets:
            raw = raw.replace(s, MASK.encode())
        return raw

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in iter(self._proc.stdout.readline, b""):
            raw = self.mask(raw)
            if not _OWN_PROBES.search(raw):
                self.last_line_monotonic = time.monotonic()
            try:
                self._fh.write(raw)
                self._fh.flush()
            except (OSError, ValueError):
                pass
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.tail.append(line)
            try:
                self._on_log(line)
            except Exception:  # noqa: BLE001 - a UI callback must not stop the log
                pass

    def retarget(self, path: Path, on_log: Callable[[str], None]) -> None:
        """Send further lines to another configuration's log file and callback (a server kept
        across configurations)."""
        old, self._fh = self._fh, self._open(path)
        self._on_log = on_log
        try:
            old.close()
        except OSError:
            pass

    def close(self, timeout_s: float = 5.0) -> None:
        self._thread.join(timeout_s)
        try:
            self._fh.close()
        except OSError:
            pass

    def lines(self) -> list[str]:
        return list(self.tail)

def reuses_servers(profile: Profile) -> bool:
    """True when one server may serve several configurations: the profile allows it and the
    sweep has more than one power limit (the only axis that is not a server flag)."""
    from .server_reuse import shared_batch

    return (profile.server.reuse_across_power_limits and len(profile.sweep.axis("power_limit_w")) > 1
            or shared_batch(profile) is not None)
