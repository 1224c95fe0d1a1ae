"""The ``mle-tui`` command.

::

    mle-tui                                  the app
    mle-tui run PROFILE [--out DIR] [--headless] [--simulate] [--format json|msgpack]
    mle-tui report DIR [--target VALUE] [--metric M] [--json] [--csv FILE]
    mle-tui profiles
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

PROG = "mle-tui"


class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _ArgError(message)


def _fail(line: str) -> int:
    print(f"{PROG}: {line}", file=sys.stderr)
    return 2


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


def _run_dir(text: str) -> Path:
    d = Path(text).expanduser()
    if not d.is_dir():
        raise InputError(text, "", "no such run directory")
    if not (d / "run.json").is_file() and not (d / "records").is_dir():
        raise InputError(text, "", "not a run directory (no run.json or records/)")
    return d


def _app(profile_path: str | None, run_dir: str | None, attach: bool) -> int:
    for name, stream in (("stdout", sys.stdout), ("stdin", sys.stdin)):
        if stream is None or not stream.isatty():
            raise InputError("command line", "", f"{name} is not a terminal: the app needs one "
                             "(use `mle-tui report DIR`, `run PROFILE --headless` or `attach DIR --headless`)")
    from mle_tui.tui.app import run_app  # Textual: imported only here

    return int(run_app(profile_path, run_dir, attach) or 0)


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
    from mle_tui.core.profile import load_profile

    path = _resolve_profile(args.profile)
    profile = load_profile(path)
    out = Path(args.out) if args.out else default_out_dir(profile.name)
    headless = args.headless or not sys.stdout.isatty()
    if not headless:
        if args.simulate or args.format != "json":
            print(f"{PROG}: --simulate and --format apply to --headless runs; "
                  "set gpu.allow_simulated in the profile for the app", file=sys.stderr)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(str(out), "", f"cannot create run directory: {exc.strerror or exc}") from None
        # The app starts the sweep in a detached runner process and follows it.
        return _app(str(path), str(out), False)
    if args.detached_child:
        try:
            path.unlink()  # the app's temporary copy of the profile, read above
        except OSError:
            pass
    from mle_tui.tui.runner_main import run_headless

    return run_headless(profile, out, profile_path=args.profile_path or str(path), simulate=args.simulate,
                        record_format=args.format, token=args.runner_token, since=args.control_since,
                        detached=args.detached_child, on_done=_print_report)


def _load_report(run_dir: Path, target: str | None, metric: str | None):
    from mle_tui.core.profile import LatencyMetric, decode_profile, parse_duration_s
    from mle_tui.core.report import build_report
    from mle_tui.core.store import RunStore

    store = RunStore(run_dir)
    manifest = store.read_manifest()
    profile = None
    if manifest is not None and manifest.profile_toml:
        profile = decode_profile(manifest.profile_toml, str(run_dir / "run.json") + " (profile_toml)")
    records = store.load_records()
    target_s = None
    if target is not None:
        try:
            target_s = parse_duration_s(target if not _is_number(target) else float(target))
        except ValueError as exc:
            raise InputError("command line", "--target", str(exc)) from None
    elif profile is not None:
        target_s = profile.target.value_s()
    if metric is not None and metric not in LatencyMetric.__args__:  # type: ignore[attr-defined]
        raise InputError("command line", "--metric",
                         f"unknown metric {metric!r} (one of {', '.join(LatencyMetric.__args__)})")  # type: ignore[attr-defined]
    if metric is None and profile is not None:
        metric = profile.latency_metric()
    price = profile.cost.electricity_usd_per_kwh if profile else None
    carbon = profile.cost.carbon_g_per_kwh if profile else None
    return build_report(records, target_s, metric, price_usd_per_kwh=price, carbon_g_per_kwh=carbon)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _print_report(run_dir: Path, target: str | None, metric: str | None) -> None:
    from mle_tui.core.report import render_text

    report = _load_report(run_dir, target, metric)
    print(render_text(report, title=f"Pareto report: {run_dir}"))


def cmd_report(args: argparse.Namespace) -> int:
    from mle_tui.core.report import render_text, to_csv, to_json

    run_dir = _run_dir(args.dir)
    report = _load_report(run_dir, args.target, args.metric)
    if args.csv:
        from mle_tui.core.store import atomic_write

        try:
            atomic_write(Path(args.csv), to_csv(report).encode())
        except OSError as exc:
            raise InputError(args.csv, "", exc.strerror or str(exc)) from None
    if args.json:
        sys.stdout.write(to_json(report).decode() + "\n")
    elif not args.csv:
        print(render_text(report, title=f"Pareto report: {run_dir}"))
    else:
        print(f"wrote {args.csv} ({len(report.rows)} rows)")
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
    r.add_argument("--format", choices=("json", "msgpack"), default="json", help="record format")
    # Set by the app when it launches the sweep in its own process (tui/sweep_process.py).
    r.add_argument("--detached-child", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--runner-token", help=argparse.SUPPRESS)
    r.add_argument("--control-since", type=float, help=argparse.SUPPRESS)
    r.add_argument("--profile-path", help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="Pareto table and recommendation of a run directory")
    rep.add_argument("dir", metavar="DIR")
    rep.add_argument("--target", metavar="VALUE", help="latency target, e.g. 100ms, 5s (default: the profile's)")
    rep.add_argument("--metric", metavar="M", help="tpot, ttft, itl, e2e or batch_latency (default: the task's)")
    rep.add_argument("--json", action="store_true", help="JSON on stdout")
    rep.add_argument("--csv", metavar="FILE", help="write the table as CSV (formulas in # comment lines)")
    rep.set_defaults(func=cmd_report)

    pr = sub.add_parser("profiles", help="list shipped profiles")
    pr.set_defaults(func=cmd_profiles)

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


if __name__ == "__main__":
    sys.exit(main())
