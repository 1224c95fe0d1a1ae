"""The ``mle-tui`` command.

::

    mle-tui                                  the app
    mle-tui run PROFILE [--out DIR] [--headless] [--simulate] [--format json|msgpack] [--gpus I,J]
                [--adaptive] [--ray ADDRESS]
    mle-tui report DIR [DIR ...] [--target VALUE] [--metric M] [--json] [--csv FILE]
                       [--plot OUT_DIR [--format png|svg] [--timelines all|recommended|none]]
    mle-tui reanalyse DIR [--rule saturation|request-count] [--min-window-s S] [--set KEY=VALUE]...
                          [--out DIR | --replace]
    mle-tui compare DIR_A DIR_B [DIR ...] [--target VALUE] [--metric M] [--plot OUT_DIR [--format png|svg]]
    mle-tui profiles
    mle-tui prepare-model NAME [DIR] [--check]
    mle-tui open DIR | attach DIR [--headless]
    mle-tui --version

In a terminal, ``run`` starts the sweep in a detached runner process (its own session; output in
``DIR/runner.log``) and the app follows it; quitting can detach. ``run --headless`` runs the sweep
in the foreground. The app (no command, ``open``) needs a terminal: stdout or stdin not a terminal
is one line and exit 2.

Exit status: 0 ok, 2 bad input (one line ``mle-tui: FILE: FIELD: PROBLEM`` on stderr), 1 run
failure (a configuration failed, the sweep was stopped, or the runner crashed). Only the app
imports Textual; ``report``, ``profiles``, ``--version`` and ``run --headless`` do not.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from mle_tui.core import __version__
from mle_tui.core.errors import InputError
from mle_tui.tui.cli_report import PROG, _fail, _print_report, _run_dir, cmd_compare, cmd_reanalyse, cmd_report



class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgError(message)


# --------------------------------------------------------------------------- helpers


def _resolve_profile(text: str) -> Path:
    p = Path(text).expanduser()
    if p.exists():
        return p
    if "/" not in text and os.sep not in text:
        from mle_tui.core.shipped import find_profile

        found = find_profile(text)
        if found is not None:
            return found
    raise InputError(text, "", "no such profile file (nor a shipped profile of that name; see `mle-tui profiles`)")


def default_out_dir(profile_name: str, now: float | None = None) -> Path:
    """``runs/<profile-name>-<UTC timestamp>``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", profile_name).strip("-") or "run"
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return Path("runs") / f"{safe}-{stamp}"


def _app(profile_path: str | None, run_dir: str | None, attach: bool, strategy: str | None = None) -> int:
    for name, stream in (("stdout", sys.stdout), ("stdin", sys.stdin)):
        if stream is None or not stream.isatty():
            raise InputError("command line", "", f"{name} is not a terminal: the app needs one "
                             "(use `mle-tui report DIR`, `run PROFILE --headless` or `attach DIR --headless`)")
    from mle_tui.tui.app import run_app  # Textual: imported only here

    return int(run_app(profile_path, run_dir, attach, strategy=strategy) or 0)


# --------------------------------------------------------------------------- commands


def cmd_version(_: argparse.Namespace) -> int:
    print(f"{PROG} {__version__}")
    return 0


def cmd_profiles(_: argparse.Namespace) -> int:
    from mle_tui.core.shipped import list_profiles, profiles_dir

    infos = list_profiles()
    if not infos:
        print(f"no profiles in {profiles_dir()}")
        return 0
    cwd = Path.cwd()
    rows = [("NAME", "TASK", "RUNTIME", "FILE", "DESCRIPTION")]
    for i in infos:
        path = Path(i.path)
        shown = str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)
        rows.append((i.name, i.task, i.runtime, shown, i.error or i.description))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4])
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mle_tui.core.adaptive.spec import with_strategy
    from mle_tui.core.profile import load_profile

    path = _resolve_profile(args.profile)
    profile = with_strategy(load_profile(path), "adaptive" if args.adaptive else None)
    out = Path(args.out) if args.out else default_out_dir(profile.name)
    headless = args.headless or not sys.stdout.isatty() or args.task_index is not None
    if args.gpus is not None:
        profile = _with_gpus(profile, args.gpus)
    if not headless:
        if args.simulate or args.format != "json" or args.gpus is not None or args.ray:
            print(f"{PROG}: --simulate, --format, --gpus and --ray apply to --headless runs; "
                  "in the app, choose GPUs in the setup screen (a Ray cluster: [cluster] ray_address "
                  "in the profile)", file=sys.stderr)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(str(out), "", f"cannot create run directory: {exc.strerror or exc}") from None
        # The app starts the sweep in a detached runner process and follows it.
        return _app(str(path), str(out), False, strategy="adaptive" if args.adaptive else None)
    factory = _cluster_runner(args.ray or profile.cluster.ray_address)
    if args.task_index is not None:  # one task of an export-slurm array
        import functools

        from mle_tui.core.slurm import TaskRunner, nvml_uuids, task_out, task_visible_devices

        if not args.out or factory is not None:
            raise InputError("command line", "--task-index", "needs --out (the exported run directory) and no --ray")
        out = task_out(profile, str(path), out, args.task_index)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible and not profile.gpu.simulated:
            # the task's GPUs are the ones it sees; a mask of UUIDs becomes NVML indices for Zeus
            mapped = task_visible_devices(visible, nvml_uuids())
            if mapped:
                os.environ["CUDA_VISIBLE_DEVICES"] = mapped
                os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        factory = functools.partial(TaskRunner, index=args.task_index)
    if args.detached_child:
        try:
            path.unlink()  # the app's temporary copy of the profile, read above
        except OSError:
            pass
    from mle_tui.tui.runner_main import run_headless

    return run_headless(profile, out, profile_path=args.profile_path or str(path), simulate=args.simulate,
                        record_format=args.format, token=args.runner_token, since=args.control_since,
                        detached=args.detached_child, on_done=_print_report,
                        runner_factory=factory)


def cmd_export_slurm(args: argparse.Namespace) -> int:
    from mle_tui.core.profile import load_profile
    from mle_tui.core.slurm import prepare_run_dir, sbatch_script
    from mle_tui.core.store import atomic_write

    path = _resolve_profile(args.profile)
    profile = load_profile(path)
    if args.gpus_per_task is not None and args.gpus_per_task < 1:
        raise InputError("command line", "--gpus-per-task", "at least 1")
    out = Path(args.out)
    script = sbatch_script(profile, str(path), out, partition=args.partition, gpus_per_task=args.gpus_per_task)
    prepare_run_dir(profile, str(path), out)
    dest = out / "slurm" / "sweep.sbatch"
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, script.encode())
    dest.chmod(0o755)
    print(f"{dest}: {len(profile.configs())} array tasks, one configuration each\n"
          f"submit: sbatch {dest}\nthen:   {PROG} report {out}")
    return 0


def _cluster_runner(address: str):  # noqa: ANN202
    """The Ray cluster driver for ``--ray ADDRESS`` / ``[cluster] ray_address``; None: local."""
    if not address:
        return None
    import functools

    from mle_tui.core.cluster.driver import ClusterRunner

    return functools.partial(ClusterRunner, address=address)


def _with_gpus(profile, text: str):  # noqa: ANN001, ANN202 - Profile -> Profile
    """The profile with ``gpu.indices`` from ``--gpus 0,1`` (side-by-side sweeps on one node:
    each takes its own GPUs, and each record names the other sweep as its neighbour)."""
    import msgspec

    from mle_tui.tui.form import parse_indices

    indices, problem = parse_indices(text)
    if problem or not indices:
        raise InputError("command line", "--gpus", problem or "name at least one GPU index, e.g. 0,1")
    return msgspec.structs.replace(profile, gpu=msgspec.structs.replace(profile.gpu, indices=indices))


def cmd_prepare_model(args: argparse.Namespace) -> int:
    from mle_tui.core.model_dirs import check_model_dir, dummy_model_dir, prepare_model_dir

    path = prepare_model_dir(args.name, args.dest) if args.dest else dummy_model_dir(args.name, "dummy")
    if path is None:
        raise InputError("command line", "NAME", f"{args.name!r} is not a shipped vision-language shape")
    print(path)
    if args.check:
        try:
            print("\n".join(check_model_dir(path)))
        except RuntimeError as exc:
            print(f"{PROG}: check failed: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    return _app(None, str(_run_dir(args.dir)), False)


def cmd_attach(args: argparse.Namespace) -> int:
    run_dir = _run_dir(args.dir)
    if args.headless or not sys.stdout.isatty():
        from mle_tui.tui.headless import follow_live

        return follow_live(run_dir, sys.stderr)
    return _app(None, str(run_dir), True)


# --------------------------------------------------------------------------- parser


def _plot_args(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--plot", metavar="OUT_DIR", help=help_text)
    parser.add_argument("--format", choices=("png", "svg"), default=None, help="figure format (default png)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Measure and optimise the energy of generative-AI inference "
                                       "(ML.ENERGY methodology). Without a command: the app.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    r = sub.add_parser("run", help="run a profile's sweep")
    r.add_argument("profile", metavar="PROFILE", help="profile file, or a shipped profile's name")
    r.add_argument("--out", metavar="DIR", help="run directory (default runs/<profile>-<UTC time>); "
                                                "an existing one is resumed")
    r.add_argument("--headless", action="store_true",
                   help="no UI: progress, then the report (automatic when stdout is not a terminal)")
    r.add_argument("--simulate", action="store_true",
                   help="allow the simulated GPU when NVML shows none (results labelled simulated)")
    r.add_argument("--format", choices=("json", "msgpack", "msgpack.gz"), default="json", help="record format")
    r.add_argument("--ray", metavar="ADDRESS", help="spread the sweep over the GPU nodes of a Ray cluster "
                   "(auto: the cluster this host belongs to; needs mle-tui[ray]); one run directory here")
    r.add_argument("--gpus", metavar="I,J", help="GPU indices for this sweep (overrides gpu.indices); run a "
                   "second sweep on other GPUs beside it and each record names the other as its neighbour")
    r.add_argument("--adaptive", action="store_true",
                   help="search for the recommendation instead of running the whole grid, stopping each "
                        "configuration once its answer is known ([sweep] strategy = \"adaptive\")")
    # Set by the app when it launches the sweep in its own process (tui/sweep_process.py).
    r.add_argument("--task-index", type=int, metavar="N", help="run only configuration N (profile order) into "
                   "OUT/tasks/KEY: what an export-slurm array task runs")
    r.add_argument("--detached-child", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--runner-token", help=argparse.SUPPRESS)
    r.add_argument("--control-since", type=float, help=argparse.SUPPRESS)
    r.add_argument("--profile-path", help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)

    sl = sub.add_parser("export-slurm", help="write an sbatch array script: one task per configuration, "
                        "one shared run directory")
    sl.add_argument("profile", metavar="PROFILE", help="profile file, or a shipped profile's name")
    sl.add_argument("--out", metavar="RUN_DIR", required=True, help="the shared run directory (on a file system "
                    "every node mounts); the script is written as RUN_DIR/slurm/sweep.sbatch")
    sl.add_argument("--partition", metavar="P", help="Slurm partition")
    sl.add_argument("--gpus-per-task", type=int, metavar="N",
                    help="GPUs per task (default: the most a configuration needs, TP x PP)")
    sl.set_defaults(func=cmd_export_slurm)

    rep = sub.add_parser("report", help="Pareto table and recommendation of a run directory")
    rep.add_argument("dirs", metavar="DIR", nargs="+",
                     help="a run directory; several: their records as one front (a grid measured in parts; a "
                          "configuration in more than one is taken from the last)")
    rep.add_argument("--target", metavar="VALUE", help="latency target, e.g. 100ms, 5s (default: the profile's)")
    rep.add_argument("--metric", metavar="M", help="tpot, ttft, itl, e2e or batch_latency (default: the task's)")
    rep.add_argument("--json", action="store_true", help="JSON on stdout")
    rep.add_argument("--csv", metavar="FILE", help="write the table as CSV (formulas in # comment lines)")
    _plot_args(rep, "write the figures (Pareto front, energy vs batch size, a timeline per configuration) "
                    "into OUT_DIR; needs matplotlib (mle-tui[plots])")
    rep.add_argument("--timelines", choices=("all", "recommended", "none"), default="all",
                     help="with --plot: a timeline for every configuration (default), only the recommended "
                          "and the fastest, or none")
    rep.set_defaults(func=cmd_report)

    ra = sub.add_parser("reanalyse", help="recompute a run's records from its traces (no GPU needed)")
    ra.add_argument("dir", metavar="DIR")
    ra.add_argument("--rule", choices=("saturation", "request-count"), help="steady-state rule (default: as run)")
    ra.add_argument("--min-window-s", type=float, metavar="S", help="window-length gate, s (default: as run)")
    ra.add_argument("--out", metavar="DIR", help="where the new records go (default DIR/reanalysed)")
    ra.add_argument("--replace", action="store_true", help="overwrite the run's own records instead")
    ra.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="any [steady_state] setting, e.g. --set max_refill_s=1 --set token_count=client")
    ra.set_defaults(func=cmd_reanalyse)

    cmp_ = sub.add_parser("compare", help="two (or more) runs' recommendations, and their fronts on one chart")
    cmp_.add_argument("dirs", metavar="DIR", nargs="+",
                      help="a run directory, or DIR+DIR: one run measured in parts, pooled (as `report DIR DIR`)")
    cmp_.add_argument("--target", metavar="VALUE", help="latency target (default: the first run's profile's)")
    cmp_.add_argument("--metric", metavar="M", help="latency metric for both runs (default: the first run's)")
    _plot_args(cmp_, "write compare.png (or .svg) with both fronts into OUT_DIR; needs matplotlib")
    cmp_.set_defaults(func=cmd_compare)

    pr = sub.add_parser("profiles", help="list shipped profiles")
    pr.set_defaults(func=cmd_profiles)

    pm = sub.add_parser("prepare-model", help="write a shipped model shape's directory for dummy weights "
                                              "(config, and for VLMs tokenizer and processor)")
    pm.add_argument("name", metavar="NAME", help="shape, e.g. qwen2.5-vl-7b, llava-1.5-7b, llama-3.1-8b")
    pm.add_argument("dest", metavar="DIR", nargs="?", help="directory (default: the cache the runtimes use)")
    pm.add_argument("--check", action="store_true", help="load it with transformers and check the image tokens")
    pm.set_defaults(func=cmd_prepare_model)

    o = sub.add_parser("open", help="open a finished run in the app")
    o.add_argument("dir", metavar="DIR")
    o.set_defaults(func=cmd_open)

    a = sub.add_parser("attach", help="follow a run started elsewhere")
    a.add_argument("dir", metavar="DIR")
    a.add_argument("--headless", action="store_true", help="progress lines instead of the app")
    a.set_defaults(func=cmd_attach)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _ArgError as exc:
        return _fail(f"command line: {exc}")
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        if args.version:
            return cmd_version(args)
        if args.cmd is None:
            return _app(None, None, False)
        return int(args.func(args))
    except InputError as exc:
        return _fail(exc.line())
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except ImportError as exc:  # an optional dependency missing where no check caught it
        from mle_tui.core.errors import EXTRAS, missing_dependency

        name = (exc.name or "").split(".")[0]
        if name not in EXTRAS and name not in ("vllm", "textual"):
            raise
        return _fail(missing_dependency(exc, f"`{PROG} {getattr(args, 'cmd', None) or 'app'}`", "", "").line())
    except OSError as exc:  # a path the user gave: one line, never a traceback
        from mle_tui.core.safe_io import os_problem

        name = str(exc.filename or "")
        return _fail(f"{name[:200]}: {os_problem(exc)}" if name else os_problem(exc))


if __name__ == "__main__":
    sys.exit(main())
