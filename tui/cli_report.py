"""The ``mle-tui`` commands that read run directories: ``report`` (table, JSON, CSV, figures),
``compare`` and ``reanalyse``. No Textual here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mle_tui.core.errors import InputError

PROG = "mle-tui"


def _fail(line: str) -> int:
    from mle_tui.core.textsafe import escape_terminal

    print(f"{PROG}: {escape_terminal(line, keep_newlines=False)}", file=sys.stderr)
    return 2


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


class _Run:
    """A run directory read for a report: records, manifest, and the target, metric, price and
    carbon intensity resolved from the command line or else the run's profile."""

    def __init__(self, records, manifest, target_s, metric, price, carbon, problems=()) -> None:
        self.records, self.manifest = records, manifest
        self.target_s, self.metric, self.price, self.carbon = target_s, metric, price, carbon
        #: Records left out (corrupt, newer schema, not in the run's profile), one line each.
        self.problems = list(problems)
        self.run_dir: Path | None = None  # set by _load_run: the sweep account is read from it
        self.profile = None  # the run's profile (run.json), set by _load_run where it has one
        self.account = None  # a pool's (_pool): used instead of reading one from run_dir

    def report(self):
        from mle_tui.core.report import build_report

        from mle_tui.core.adaptive.account import sweep_account

        rep = build_report(self.records, self.target_s, self.metric,
                           price_usd_per_kwh=self.price, carbon_g_per_kwh=self.carbon,
                           problems=self.problems)
        if self.account is not None:
            rep.sweep = self.account
        elif self.run_dir is not None:
            rep.sweep = sweep_account(self.run_dir, self.records, self.manifest,
                                      rep.recommended.key if rep.recommended else None)
        return rep


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
    run = _Run(records, manifest, target_s, metric, price, carbon, scan.problems)
    run.run_dir, run.profile = run_dir, profile
    return run


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
    dirs = [_run_dir(d) for d in args.dirs]
    run_dir = dirs[0]
    if args.csv:
        from mle_tui.core.safe_io import check_output_file

        check_output_file(Path(args.csv), "--csv")
    run = _load_run(run_dir, args.target, args.metric, full=bool(args.plot))
    pooled = _pool(run, dirs, args.target, args.metric, bool(args.plot)) if len(dirs) > 1 else None
    report = run.report()
    if args.plot:
        from mle_tui.core.figures import render_run, report_command

        out = _plot_dir(args.plot)
        command = report_command(list(args.dirs), args.plot, fmt, args.target, args.metric, args.timelines)
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
        title = f"Pareto report: {run_dir}" if pooled is None else f"Pareto report: {len(dirs)} run directories pooled"
        print(render_text(report, title=title))
        for line in pooled or []:
            print(line)
    elif args.csv:
        print(f"wrote {args.csv} ({len(report.rows)} rows)")
    for line in report.problems:
        _fail(line)
    return 2 if report.problems else 0


def _pool(run: _Run, dirs: list[Path], target: str | None, metric: str | None, full: bool = False) -> list[str]:
    """Make ``run`` (the first directory's) hold the records of all ``dirs`` as one front
    (:mod:`mle_tui.core.run_pool`), at its target and metric (the parts must share the task), with
    the GPU time of the configurations in it; the lines to print under the table: what each
    directory gave, which configurations a later one replaced, each one's own GPU time."""
    from mle_tui.core.adaptive.account import SweepAccount, sweep_account, sweep_lines
    from mle_tui.core.adaptive.gputime import account, summary_line
    from mle_tui.core.run_pool import pool_records

    runs = [run] + [_load_run(d, target, metric, full=full) for d in dirs[1:]]
    pooled = pool_records([(str(d), r.records) for d, r in zip(dirs, runs)])
    lines = ["Pooled:"] + [f"  {n}" for n in pooled.notes]
    configs: dict[str, object] = {}
    for d, r in zip(dirs, runs):
        acc = sweep_account(d, r.records, r.manifest)
        if acc is not None:
            lines.append(f"  {d}: {sweep_lines(acc)[0]}")
        for c in r.profile.configs() if r.profile is not None else []:
            configs.setdefault(c.key(), c)
    run.records = pooled.records
    run.problems = [p for r in runs for p in r.problems]
    run.run_dir = None  # one directory's sweep account does not describe the pool
    # the pool's GPU time: that of the configurations in it (a replaced one's time is not the grid's)
    gt = account(list(pooled.records), list(configs.values()), n_requests=lambda c: 0)
    run.account = SweepAccount(strategy="grid", gpu_time=gt, summary=summary_line(gt))
    return lines


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


def _run_group(text: str) -> list[Path]:
    """A compare argument: a run directory, or several joined by ``+`` (one run measured in parts,
    pooled as ``report DIR DIR`` pools them); a directory whose own name has a ``+`` is itself."""
    if "+" not in text or Path(text).expanduser().is_dir():
        return [_run_dir(text)]
    return [_run_dir(part) for part in text.split("+")]


def _load_group(dirs: list[Path], target: str | None, metric: str | None) -> _Run:
    run = _load_run(dirs[0], target, metric)
    if len(dirs) > 1:
        _pool(run, dirs, target, metric)
    return run


def cmd_compare(args: argparse.Namespace) -> int:
    """Each run's recommendation on a line, then each later run against the first (shared
    configurations, the recommendations, GPU time: :mod:`mle_tui.core.run_compare`); with ``--plot``, their
    fronts on one chart. The first run's metric (or ``--metric``) is used for both; the target
    is ``--target`` or the first run's profile's."""
    fmt = _plot_format(args)
    if len(args.dirs) < 2:
        raise InputError("command line", "DIR", "compare needs two or more run directories")
    groups = [_run_group(d) for d in args.dirs]
    dirs = [Path(d) for d in args.dirs]
    first = _load_group(groups[0], args.target, args.metric)
    first_rep = first.report()
    metric = first_rep.metric
    target = args.target
    runs = [first] + [_load_group(g, target, metric) for g in groups[1:]]
    for run in runs[1:]:
        run.target_s = first.target_s
    reports = [first_rep] + [run.report() for run in runs[1:]]  # each built once (its GPU-time account too)
    for d, rep in zip(dirs, reports):
        print(f"{d}: {'SIMULATED: ' if rep.simulated else ''}{rep.message}")
    from mle_tui.core.run_compare import compare_lines

    names = ["+".join(p.name for p in g) for g in groups]
    if len(set(names)) < len(names):  # two runs named alike: their paths
        names = [str(d) for d in dirs]
    for n, rep in zip(names[1:], reports[1:]):
        for line in compare_lines(names[0], first_rep, n, rep):
            print(line)
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
