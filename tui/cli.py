"""The ``mle-tui`` command.

::

    mle-tui                                  the app
    mle-tui run PROFILE [--out DIR] [--headless] [--simulate] [--format json|msgpack]
    mle-tui report DIR [--target VALUE] [--metric M] [--json] [--csv FILE]
                       [--plot OUT_DIR [--format png|svg] [--timelines all|recommended|none]]
    mle-tui reanalyse DIR [--rule saturation|request-count] [--min-window-s S] [--set KEY=VALUE]...
                          [--out DIR | --replace]
    mle-tui compare DIR_A DIR_B [DIR ...] [--target VALUE] [--metric M] [--plot OUT_DIR [--format png|svg]]
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
    from mle_tui.core.textsafe import escape_terminal

    print(f"{PROG}: {escape_terminal(line, keep_newlines=False)}", file=sys.stderr)
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
    from mle_tui.core.safe_io import os_problem

    d = Path(text).expanduser()
    try:
        if not d.is_dir():
            raise InputError(text, "", "no such run directory")
        if not (d / "run.json").is_file() and not (d / "records").is_dir():
            raise InputError(text, "", "not a run directory (no run.json or records/)")
    except OSError as exc:
        raise InputError(text[:200], "", os_problem(exc)) from None
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


class _Run:
    """A run directory read for a report: records, manifest, and the target, metric, price and
    carbon intensity resolved from the command line or else the run's profile."""

    def __init__(self, records, manifest, target_s, metric, price, carbon, problems=()) -> None:
        self.records, self.manifest = records, manifest
        self.target_s, self.metric, self.price, self.carbon = target_s, metric, price, carbon
        #: Records left out (corrupt, newer schema, not in the run's profile), one line each.
        self.problems = list(problems)

    def report(self):
        from mle_tui.core.report import build_report

        return build_report(self.records, self.target_s, self.metric,
                            price_usd_per_kwh=self.price, carbon_g_per_kwh=self.carbon,
                            problems=self.problems)


def _load_report(run_dir: Path, target: str | None, metric: str | None):
    return _load_run(run_dir, target, metric).report()


def _load_run(run_dir: Path, target: str | None, metric: str | None, full: bool = False) -> _Run:
    """``full``: whole records (timelines, rows) for figures; else record heads (tables)."""
    from mle_tui.core.profile import DEFAULT_METRIC, LatencyMetric, decode_profile, parse_duration_s
    from mle_tui.core.store import RunStore

    store = RunStore(run_dir)
    manifest = store.read_manifest()
    profile = None
    if manifest is not None and manifest.profile_toml:
        profile = decode_profile(manifest.profile_toml, str(run_dir / "run.json") + " (profile_toml)")
    keys = None
    if profile is not None:
        keys = [c.key() for c in profile.configs()]
    elif manifest is not None and manifest.configs:
        keys = list(manifest.configs)
    scan = store.scan(keys, heads=not full)
    records = scan.records
    target_s = None
    if target is not None:
        if _is_number(target):
            raise InputError("command line", "--target",
                             f"{target!r} is ambiguous: give a unit, e.g. {target}ms or {target}s")
        try:
            target_s = parse_duration_s(target)
        except ValueError as exc:
            raise InputError("command line", "--target", str(exc)) from None
    elif profile is not None:
        target_s = profile.target.value_s()
    if metric is not None and metric not in LatencyMetric.__args__:  # type: ignore[attr-defined]
        raise InputError("command line", "--metric",
                         f"unknown metric {metric!r} (one of {', '.join(LatencyMetric.__args__)})")  # type: ignore[attr-defined]
    task = profile.task if profile is not None else (records[0].task if records else None)
    if metric is not None and task is not None:
        from mle_tui.core.profile_checks import metrics_for_task

        if metric not in metrics_for_task(task):
            raise InputError("command line", "--metric", f"a {task} run has no {metric} data (it has: "
                             f"{', '.join(metrics_for_task(task))})")
    if metric is None and profile is not None:
        metric = profile.latency_metric()
    elif metric is None and task in DEFAULT_METRIC:
        metric = DEFAULT_METRIC[task]
    price = profile.cost.electricity_usd_per_kwh if profile else None
    carbon = profile.cost.carbon_g_per_kwh if profile else None
    return _Run(records, manifest, target_s, metric, price, carbon, scan.problems)


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


def _plot_format(args: argparse.Namespace) -> str:
    if args.format is not None and not args.plot:
        raise InputError("command line", "--format", "applies to --plot OUT_DIR")
    return args.format or "png"


def _plot_dir(text: str) -> Path:
    out = Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(text, "--plot", "exists and is not a directory")
    return out


def cmd_report(args: argparse.Namespace) -> int:
    from mle_tui.core.report import render_text, to_csv, to_json

    fmt = _plot_format(args)
    if args.timelines != "all" and not args.plot:
        raise InputError("command line", "--timelines", "applies to --plot OUT_DIR")
    run_dir = _run_dir(args.dir)
    if args.csv:
        from mle_tui.core.safe_io import check_output_file

        check_output_file(Path(args.csv), "--csv")
    run = _load_run(run_dir, args.target, args.metric, full=bool(args.plot))
    report = run.report()
    if args.plot:
        from mle_tui.core.figures import render_run, report_command

        out = _plot_dir(args.plot)
        command = report_command([args.dir], args.plot, fmt, args.target, args.metric, args.timelines)
        try:
            written = render_run(run.records, run.manifest, out, target_s=run.target_s, metric=report.metric,
                                 fmt=fmt, command=command, timelines=args.timelines)
        except OSError as exc:
            raise InputError(args.plot, "--plot", exc.strerror or str(exc)) from None
        print(f"wrote {len(written)} figures to {out}", file=sys.stderr if args.json else sys.stdout)
    if args.csv:
        from mle_tui.core.safe_io import os_problem
        from mle_tui.core.store import atomic_write

        try:
            atomic_write(Path(args.csv), to_csv(report).encode())
        except OSError as exc:
            raise InputError(args.csv, "--csv", os_problem(exc)) from None
    if args.json:
        sys.stdout.write(to_json(report).decode() + "\n")
    elif not args.csv and not args.plot:
        print(render_text(report, title=f"Pareto report: {run_dir}"))
    elif args.csv:
        print(f"wrote {args.csv} ({len(report.rows)} rows)")
    for line in report.problems:
        _fail(line)
    return 2 if report.problems else 0


def cmd_reanalyse(args: argparse.Namespace) -> int:
    from mle_tui.core.reanalyse import reanalyse

    run_dir = _run_dir(args.dir)
    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("command line", "--set", f"{item!r}: expected KEY=VALUE")
        overrides[key.strip()] = value.strip()
    res = reanalyse(run_dir, Path(args.out) if args.out else None, rule=args.rule,
                    min_window_s=args.min_window_s, replace=args.replace, overrides=overrides)
    print(f"{'configuration':40s} {'status':>17s} {'J/request (was -> now)':>26s} {'change':>8s}")
    for c in res.changes:
        status = c.new_status if c.old_status in (None, c.new_status) else f"{c.old_status}->{c.new_status}"
        old = "-" if c.old_energy_per_request_j is None else f"{c.old_energy_per_request_j:.4g}"
        new = "-" if c.new_energy_per_request_j is None else f"{c.new_energy_per_request_j:.4g}"
        ch = "" if c.change is None else f"{c.change:+.1%}"
        print(f"{c.config_key:40s} {status:>17s} {old + ' -> ' + new:>26s} {ch:>8s}")
    for k in res.without_trace:
        print(f"{k:40s} no trace (measured before traces were kept): not reanalysed")
    print(f"{len(res.changes)} records reanalysed into {res.out_dir}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Each run's recommendation on a line; with ``--plot``, their fronts on one chart. The
    first run's metric (or ``--metric``) is used for both; the target is ``--target`` or the
    first run's profile's."""
    fmt = _plot_format(args)
    if len(args.dirs) < 2:
        raise InputError("command line", "DIR", "compare needs two or more run directories")
    dirs = [_run_dir(d) for d in args.dirs]
    first = _load_run(dirs[0], args.target, args.metric)
    metric = first.report().metric
    target = args.target
    runs = [first] + [_load_run(d, target, metric) for d in dirs[1:]]
    for run in runs[1:]:
        run.target_s = first.target_s
    for d, run in zip(dirs, runs):
        rep = run.report()
        print(f"{d}: {'SIMULATED: ' if rep.simulated else ''}{rep.message}")
    if args.plot:
        from mle_tui.core.figures import render_compare, report_command

        out = _plot_dir(args.plot)
        command = report_command(list(args.dirs), args.plot, fmt, args.target, args.metric)
        try:
            path = render_compare([(r.records, r.manifest) for r in runs], out, target_s=first.target_s,
                                  metric=metric, fmt=fmt, command=command)
        except OSError as exc:
            raise InputError(args.plot, "--plot", exc.strerror or str(exc)) from None
        print(f"wrote {path}")
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
    cmp_.add_argument("dirs", metavar="DIR", nargs="+")
    cmp_.add_argument("--target", metavar="VALUE", help="latency target (default: the first run's profile's)")
    cmp_.add_argument("--metric", metavar="M", help="latency metric for both runs (default: the first run's)")
    _plot_args(cmp_, "write compare.png (or .svg) with both fronts into OUT_DIR; needs matplotlib")
    cmp_.set_defaults(func=cmd_compare)

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
