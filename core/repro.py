"""A shell command line that reproduces one measured configuration: the GPU power limits
(``nvidia-smi -i N -pl W`` per GPU), the environment and the server command with every flag the
runner passed (load format, dtype, prefix caching, extra args), built from the record and the
run manifest (which holds the resolved profile). Pure: reads no GPU, starts nothing.

The per-run values that do not change what is measured are left out: ``--host``, ``--port`` and
``--api-key`` (a fresh random key per server; pass your own through ``VLLM_API_KEY``).
Secrets in ``server.env`` are never copied: they are written as ``NAME="$NAME"``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import msgspec

from .errors import InputError
from .profile import Profile, decode_profile
from .records import Hardware, Manifest, Record

#: Per-run server flags (with their value) that do not change the measurement.
_PER_RUN_FLAGS = ("--host", "--port", "--api-key")
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)


def _profile(manifest: Manifest | None) -> Profile | None:
    if manifest is None or not manifest.profile_toml:
        return None
    try:
        return decode_profile(manifest.profile_toml, "run.json")
    except InputError:
        return None


def _env_words(env: dict[str, str]) -> list[str]:
    words = []
    for name in sorted(env):
        if _SECRET_NAME.search(name):
            words.append(f'{name}="${name}"')
        else:
            words.append(f"{name}={shlex.quote(env[name])}")
    return words


def _drop_per_run(cmd: list[str]) -> list[str]:
    out, skip = [], False
    for word in cmd:
        if skip:
            skip = False
            continue
        if word in _PER_RUN_FLAGS:
            skip = True
            continue
        out.append(word)
    return out


def limit_commands(record: Record) -> list[str]:
    """``nvidia-smi -i N -pl W`` per measured GPU, with the limit read back during the
    configuration (else the requested one); none when the limit was left untouched."""
    hw = record.hardware
    limits = hw.power_limit_w
    if record.config.power_limit_w is None and not limits:
        return []
    out, names = [], device_names(hw)
    for n, _index in enumerate(hw.gpu_indices):
        w = limits[n] if limits and n < len(limits) else record.config.power_limit_w
        if w is None:
            continue
        out.append(f"sudo nvidia-smi -i {names[n]} -pl {w:g}")
    return out


def device_names(hw: Hardware) -> list[str]:
    """The measured GPUs as nvidia-smi and CUDA_VISIBLE_DEVICES take them: UUIDs where the
    record has all of them (indices count the GPUs the run saw, which a mask may have limited),
    else the indices."""
    uuids = hw.gpu_uuids or []
    if len(uuids) == len(hw.gpu_indices) and all(uuids):
        return [str(u) for u in uuids]
    return [str(i) for i in hw.gpu_indices]


def vllm_command(record: Record, profile: Profile, *, profile_dir: Path | None = None) -> list[str]:
    """The ``vllm serve`` words the runner used for this configuration (see
    :func:`mle_tui.core.runtimes.vllm.server_command`), per-run flags removed."""
    from .runtimes.vllm import has_tokenizer, resolve_model, server_command

    c = record.config
    model = resolve_model(profile.model.id, profile_dir)
    tokenizer = resolve_model(profile.model.tokenizer, profile_dir) if profile.model.tokenizer else None
    cmd = server_command(
        profile, model=model, max_num_seqs=c.batch, tensor_parallel=c.tensor_parallel,
        pipeline_parallel=c.pipeline_parallel, port=0, tokenizer=tokenizer,
        skip_tokenizer_init=tokenizer is None and not has_tokenizer(model), python="python3",
        use_console_script=True)
    return _drop_per_run(cmd)


def repro_command(record: Record, manifest: Manifest | None, *, run_dir: Path | None = None) -> str:
    """Lines to paste into a shell on the GPU node: a comment naming the configuration and the
    run, the power limits, then the server with its environment."""
    profile = _profile(manifest)
    profile_dir = None
    if manifest is not None and manifest.profile_path:
        profile_dir = Path(manifest.profile_path).parent
    elif run_dir is not None:
        profile_dir = Path(run_dir)
    hw = record.hardware
    head = (f"# mle-tui {record.run_id} {record.config_key}: {record.model} ({record.task}, {record.runtime}) "
            f"on {len(hw.gpu_indices)}× {', '.join(sorted(set(hw.gpu_names))) or '?'}")
    if record.simulated or hw.power_source == "simulated":
        head += " — SIMULATED measurement"
    lines = [head]
    lines += limit_commands(record)
    env: dict[str, str] = {}
    if profile is not None:
        env.update(profile.server.env)
    if hw.gpu_indices and "CUDA_VISIBLE_DEVICES" not in env:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(device_names(hw))
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    if record.runtime == "vllm" and profile is not None:
        words = vllm_command(record, profile, profile_dir=profile_dir)
        lines.append(" ".join([*_env_words(env), *map(shlex.quote, words)]))
    elif record.runtime == "vllm":
        lines.append("# run.json holds no profile: server flags unknown beyond the configuration")
        c = record.config
        words = ["vllm", "serve", record.model, "--max-num-seqs", str(c.batch),
                 "--tensor-parallel-size", str(c.tensor_parallel),
                 "--pipeline-parallel-size", str(c.pipeline_parallel)]
        if record.weights == "dummy":
            words += ["--load-format", "dummy"]
        lines.append(" ".join([*_env_words(env), *map(shlex.quote, words)]))
    else:
        cfg = msgspec.json.encode(record.config).decode()
        lines.append(f"# {record.runtime} runs in-process: configuration {cfg}")
        if env:
            lines.append("export " + " ".join(_env_words(env)))
    return "\n".join(lines)
