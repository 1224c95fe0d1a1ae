"""The order in which a sweep runs its configurations: the grid (every configuration, in
profile order) or the adaptive search (the next configuration chosen from the results so far).

The runner iterates a plan, runs each configuration it yields and hands the record back with
:meth:`observe`. An adaptive plan writes ``adaptive.json`` in the run directory (what was
measured in which order, what was pruned by which rule, the rule checks that failed, the GPU
time) after every configuration, so an interrupted run says where it stands.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from ..config import Config
from ..events import GpuTimeUpdate
from ..pareto import recommend
from ..records import RecordHead
from .gputime import RunGpuTime, account, summary_line
from .search import AdaptiveSearch, Obs
from .spec import AdaptiveSpec

ADAPTIVE_FILE = "adaptive.json"


class AdaptiveLog(msgspec.Struct, kw_only=True):
    """``adaptive.json``: the search's account of a run."""

    strategy: str = "adaptive"
    target_s: float | None = None
    order: list[str] = []
    pruned: dict[str, str] = {}
    notes: list[str] = []
    recommended: str | None = None
    gpu_time: RunGpuTime | None = None
    finished: bool = False
    summary: str = ""


def obs_of(r: RecordHead) -> Obs:
    """A record as the search sees it. ``unstable``: the running batch stayed under
    min_batch_fraction x B (the gate ML.ENERGY drops every larger B of the model and GPU on).
    ``latency_valid``: invalid by the output-lag gate alone (the client's latency stands)."""
    gates = r.steady_state.gates if r.steady_state is not None else []
    unstable = r.status == "invalid" and any(g.name == "mean_batch" and not g.ok for g in gates)
    errors = [g for g in gates if not g.ok and g.severity == "error"]
    lag_only = (r.status == "invalid" and bool(errors) and all(g.name == "output_lag" for g in errors)
                and sum(1 for x in r.reasons if not x.startswith("warning:")) == len(errors))
    return Obs(ok=r.status == "ok", energy_j=r.energy_per_request_j, latency_s=r.latency_value_s,
               failed=unstable, latency_valid=lag_only)


class Plan:
    """The grid: every configuration without a record yet, in profile order."""

    strategy = "grid"
    early_stop: AdaptiveSpec | None = None

    def __init__(self, configs: list[Config], existing: list[RecordHead], *, n_requests: Callable[[Config], int],
                 batches: int, target_s: float | None) -> None:
        self.configs = list(configs)
        self.records: dict[str, RecordHead] = {r.config_key: r for r in existing if r.status != "skipped"}
        self.n_requests, self.batches, self.target_s = n_requests, batches, target_s
        self._todo = [c for c in self.configs if c.key() not in self.records]

    def __iter__(self) -> Iterator[Config]:
        while self._todo:
            yield self._todo.pop(0)

    def next_hint(self, cfg: Config) -> Config | None:
        """The configuration expected after ``cfg`` (lets a runtime keep its server)."""
        return self._todo[0] if self._todo else None

    def observe(self, cfg: Config, record: RecordHead) -> None:
        self.records[cfg.key()] = record

    def already_done(self, cfg: Config) -> None:
        """``cfg`` has a record file the plan did not read (written meanwhile, or unreadable)."""

    def recommended(self) -> str | None:
        rec = recommend(list(self.records.values()), self.target_s)  # type: ignore[arg-type]
        return rec.recommended

    def pruned_now(self) -> dict[str, str]:
        """Configurations excluded now, with the rule (the grid excludes none)."""
        return {}

    def gpu_time(self, pruned: dict[str, str] | None = None) -> RunGpuTime:
        gt = account(list(self.records.values()), self.configs, n_requests=self.n_requests,
                     batches=self.batches, strategy=self.strategy)
        gt.pruned = len(self.pruned_now() if pruned is None else pruned)
        return gt

    def event(self) -> GpuTimeUpdate:
        """After each configuration: the GPU time so far and what the search excludes now (the
        app marks those rows pruned and leaves them out of its ETA)."""
        pruned = self.pruned_now()
        gt, rec = self.gpu_time(pruned), self.recommended()
        return GpuTimeUpdate(strategy=self.strategy, measured=gt.measured, total=gt.total,
                             spent_gpu_s=gt.spent_gpu_s, grid_estimate_gpu_s=gt.grid_estimate_gpu_s,
                             early_stopped=gt.early_stopped, recommended=rec, line=summary_line(gt, rec),
                             pruned=pruned)

    def finish(self, stopped: bool) -> list[str]:
        """Lines for the log at the end of the sweep."""
        return [summary_line(self.gpu_time(), self.recommended())]

    def done(self) -> bool:
        return not self._todo


class AdaptivePlan(Plan):
    strategy = "adaptive"

    def __init__(self, configs: list[Config], existing: list[RecordHead], *, n_requests: Callable[[Config], int],
                 batches: int, target_s: float | None, spec: AdaptiveSpec, run_dir: Path) -> None:
        super().__init__(configs, existing, n_requests=n_requests, batches=batches, target_s=target_s)
        self.early_stop = spec
        self.search = AdaptiveSearch(self.configs, target_s, spec)
        self.path = Path(run_dir) / ADAPTIVE_FILE
        by_key = {c.key(): c for c in self.configs}
        for key, r in self.records.items():  # a resumed run: what was measured counts
            if key in by_key:
                self.search.observe(by_key[key], obs_of(r))
        self._finished = False

    def __iter__(self) -> Iterator[Config]:
        while True:
            cfg = self.search.next()
            if cfg is None:
                self._finished = True
                self.write()
                return
            yield cfg

    def next_hint(self, cfg: Config) -> Config | None:
        # The next configuration depends on this one's result; guess "the same server" (the
        # search walks rows of one B), so a runtime that can keeps it -- a wrong guess only
        # keeps an idle server until the next configuration starts.
        return cfg

    def observe(self, cfg: Config, record: RecordHead) -> None:
        super().observe(cfg, record)
        # a configuration skipped by the user counts as measured without a result here (it
        # runs again on resume, when the search proposes it again)
        self.search.observe(cfg, obs_of(record) if record.status != "skipped" else Obs(ok=False))
        self.write()

    def done(self) -> bool:
        return self._finished

    def pruned_now(self) -> dict[str, str]:
        return self.search.pruned_now()

    def already_done(self, cfg: Config) -> None:
        self.search.observe(cfg, Obs(ok=False))

    def log(self) -> AdaptiveLog:
        gt, rec = self.gpu_time(), self.recommended()
        return AdaptiveLog(target_s=self.target_s, order=list(self.search.order), pruned=self.search.pruned,
                           notes=list(self.search.notes), recommended=rec, gpu_time=gt,
                           finished=self._finished, summary=summary_line(gt, rec))

    def write(self) -> None:
        try:
            self.path.write_bytes(msgspec.json.format(msgspec.json.encode(self.log()), indent=1))
        except OSError:
            pass

    def finish(self, stopped: bool) -> list[str]:
        log = self.log()
        lines = [f"adaptive: {msg}" for msg in log.notes]
        lines += [f"adaptive: pruned {key}: {why}" for key, why in log.pruned.items()]
        return lines + [log.summary]


def read_adaptive(run_dir: Path) -> AdaptiveLog | None:
    """``adaptive.json`` of a run directory, or None (a grid run, or unreadable)."""
    try:
        return msgspec.json.decode((Path(run_dir) / ADAPTIVE_FILE).read_bytes(), type=AdaptiveLog)
    except (OSError, msgspec.DecodeError, json.JSONDecodeError):
        return None
