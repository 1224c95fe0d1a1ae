"""Search the configuration space for the recommendation instead of walking the grid.

Configurations are grouped by every axis but B (``max_num_seqs`` / ``batch_size``) and the
power limit; each group is a B x power-limit table. The rules assumed, and checked against
every measurement:

* latency rises with B and falls with the power limit (``latency_tolerance``);
* energy per request falls with B at a given power limit and is U-shaped in the power limit
  (``energy_tolerance``).

The search: (1) bisection over B at the highest power limit for the largest B that meets the
target; (2) row by row from that B down, a golden-section search over the power limit for the
row's lowest energy among the limits that meet the target; (3) whatever no bound excludes is
measured, best first. A configuration is pruned when an optimistic bound built from measured
ones says it cannot meet the target (latency bound) or cannot beat the best energy that meets
it (energy bound: a larger B, or the U, at the same limit). Each pruned configuration keeps
the rule and the measurement that pruned it. Where a measurement breaks a rule, the bounds
resting on it are dropped for that column (B direction) or row (power-limit direction), so
the configurations there are measured as in the grid. The configurations next to the current
best are measured whatever the energy bound says (neighbour checks).
"""

from __future__ import annotations

import math

import msgspec

from ..config import Config
from .spec import AdaptiveSpec

GOLDEN = 0.381966
#: What :attr:`AdaptiveSearch.pruned` says of a configuration no rule excludes (a stopped run).
NOT_MEASURED = "not measured (the search was stopped)"


class Obs(msgspec.Struct, kw_only=True, frozen=True):
    """What the search needs of a record: usable (status ok), energy per request, latency."""

    ok: bool
    energy_j: float | None = None
    latency_s: float | None = None
    #: Unstable (running batch under min_batch_fraction x B): every larger B is dropped too,
    #: at every power limit (ML.ENERGY's rule).
    failed: bool = False
    #: Not ok, but its latency is what the client saw (invalid only because the server's output
    #: lagged the GPU, which spoils energy per token, not latency): it bounds latency as an ok
    #: observation does, and nothing else.
    latency_valid: bool = False

    @property
    def latency_known(self) -> bool:
        return (self.ok or self.latency_valid) and self.latency_s is not None


def group_key(cfg: Config) -> Config:
    return msgspec.structs.replace(cfg, max_num_seqs=None, batch_size=None, power_limit_w=None)


class _Group:
    def __init__(self, configs: list[Config]) -> None:
        self.bs = sorted({c.batch for c in configs})
        self.pls = sorted({c.power_limit_w for c in configs}, key=lambda p: -1 if p is None else p)
        self.cell = {(self.bs.index(c.batch), self.pls.index(c.power_limit_w)): c for c in configs}
        self.m, self.n = len(self.bs), len(self.pls)
        self.obs: dict[tuple[int, int], Obs] = {}
        self.lat_col_broken: set[int] = set()
        self.lat_row_broken: set[int] = set()
        self.e_col_broken: set[int] = set()
        self.u_row_broken: set[int] = set()
        #: Rows slower than a larger B somewhere: their latency bounds no other row.
        self.lat_outlier_rows: set[int] = set()
        self.bisected = False

    def name(self, i: int, j: int) -> str:
        pl = self.pls[j]
        return f"B={self.bs[i]} {'default' if pl is None else pl} W"


class AdaptiveSearch:
    """``next()`` gives the configuration to measure next (None: done), ``observe()`` takes its
    result. ``pruned`` names the rule that excluded each configuration never measured."""

    def __init__(self, configs: list[Config], target_s: float | None, spec: AdaptiveSpec | None = None) -> None:
        self.spec = spec or AdaptiveSpec()
        self.target_s = target_s
        self.configs = list(configs)
        groups: dict[Config, list[Config]] = {}
        for c in configs:
            groups.setdefault(group_key(c), []).append(c)
        self.groups = [_Group(v) for v in groups.values()]
        self._where = {g.cell[ij].key(): (g, ij) for g in self.groups for ij in g.cell}
        self.notes: list[str] = []
        self.order: list[str] = []

    # -- results -----------------------------------------------------------------------------
    def observe(self, cfg: Config, obs: Obs) -> None:
        g, (i, j) = self._where[cfg.key()]
        if (i, j) in g.obs:
            return
        g.obs[(i, j)] = obs
        self.order.append(cfg.key())
        self._check(g, i, j)

    def measured(self) -> int:
        return sum(len(g.obs) for g in self.groups)

    def feasible(self, o: Obs) -> bool:
        return o.ok and o.latency_s is not None and o.energy_j is not None and (
            self.target_s is None or o.latency_s <= self.target_s)

    def best(self) -> tuple[float, str] | None:
        """Lowest energy that meets the target so far, and its key."""
        out = None
        for g in self.groups:
            for ij, o in g.obs.items():
                if self.feasible(o) and (out is None or o.energy_j < out[0]):  # type: ignore[operator]
                    out = (float(o.energy_j), g.cell[ij].key())  # type: ignore[arg-type]
        return out

    # -- rule checks -------------------------------------------------------------------------
    def _check(self, g: _Group, i: int, j: int) -> None:
        lt, et = self.spec.latency_tolerance, self.spec.energy_tolerance
        col = sorted((a, o) for (a, b), o in g.obs.items() if b == j and o.ok and o.latency_s is not None)
        row = sorted((b, o) for (a, b), o in g.obs.items() if a == i and o.ok and o.latency_s is not None)
        slow = _slow_rows(col, lt)
        g.lat_outlier_rows |= slow
        if j not in g.lat_col_broken and slow:
            g.lat_col_broken.add(j)
            self.notes.append(f"latency not monotone in B at {g.name(i, j).split(' ', 1)[1]}: "
                              "that column is measured as in the grid")
        if j not in g.e_col_broken and _breaks(col, lambda o: o.energy_j, rising=False, tol=et):
            g.e_col_broken.add(j)
            self.notes.append(f"energy not falling with B at {g.name(i, j).split(' ', 1)[1]}: "
                              "no energy bound across B in that column")
        if i not in g.lat_row_broken and _breaks(row, lambda o: o.latency_s, rising=False, tol=lt):
            g.lat_row_broken.add(i)
            self.notes.append(f"latency not falling with the power limit at B={g.bs[i]}: "
                              "no latency bound across power limits in that row")
        if i not in g.u_row_broken and not _u_shaped([o.energy_j for _, o in row], et):
            g.u_row_broken.add(i)
            self.notes.append(f"energy not U-shaped in the power limit at B={g.bs[i]}: "
                              "that row is measured as in the grid")

    # -- bounds ------------------------------------------------------------------------------
    def prune_reason(self, g: _Group, i: int, j: int, best: tuple[float, str] | None,
                     exempt: set[tuple[int, int]] = frozenset()) -> str | None:  # type: ignore[assignment]
        """Why (i, j) cannot be the recommendation, or None."""
        T = self.target_s
        for (a, b), o in g.obs.items():
            if o.failed and a < i:
                return (f"unstable at a smaller B: {g.name(a, b)} never held its batch (every larger B is "
                        "dropped, as ML.ENERGY does)")
        if T is not None:
            for (a, b), o in g.obs.items():
                # only a clear miss prunes: within latency_tolerance of the target, measurement
                # noise decides, and the neighbours get their own chance as in the grid
                if not (o.latency_known and a <= i and b >= j
                        and o.latency_s > T * (1 + self.spec.latency_tolerance)):  # type: ignore[operator]
                    continue
                # via (a, j): row a's latency falls with the limit from j up to b, and column
                # j's rises with B from a up to i
                if (b == j or a not in g.lat_row_broken) and (
                        a == i or j not in g.lat_col_broken and a not in g.lat_outlier_rows):
                    return (f"latency bound: {g.name(a, b)} is over the target ({o.latency_s:.4g} s), so a B as "
                            "large or larger at a limit as low or lower is too")
        if best is None or (i, j) in exempt:
            return None
        tol = self.spec.energy_tolerance
        for a in range(i, g.m):
            if a > i and j in g.e_col_broken:
                break
            lb, why = self._row_bound(g, a, j)
            if lb is None:
                continue
            lb *= (1 - tol) if a > i else 1.0
            if lb > best[0]:
                via = "" if a == i else f", and energy falls with B at {g.name(a, j).split(' ', 1)[1]}"
                return f"energy bound: {why} >= best {best[0]:.4g} J ({best[1]}){via}"
        return None

    def _row_bound(self, g: _Group, a: int, j: int) -> tuple[float | None, str]:
        o = g.obs.get((a, j))
        if o is not None:
            return (o.energy_j, f"{g.name(a, j)} measured {o.energy_j:.4g} J") if o.ok and o.energy_j else (None, "")
        if a in g.u_row_broken:
            return None, ""
        row = sorted((b, float(o.energy_j)) for (r, b), o in g.obs.items() if r == a and o.ok and o.energy_j)
        lb, why = None, ""
        tol = self.spec.energy_tolerance
        for k, (b, e) in enumerate(row):
            # quasi-convexity: a point with a clearly lower one beyond it (by twice the tolerance:
            # two noisy points differ by more than one) bounds everything on
            # its other side (a flat stretch bounds nothing: the U may fall again past it)
            if b > j and any(e2 < e * (1 - 2 * tol) for _, e2 in row[k + 1:]):  # left of a falling stretch
                lb, why = _max_bound(lb, why, e * (1 - tol), f"{g.name(a, b)} measured {e:.4g} J, U-shape")
            if b < j and any(e2 < e * (1 - 2 * tol) for _, e2 in row[:k]):  # right of a rising stretch
                lb, why = _max_bound(lb, why, e * (1 - tol), f"{g.name(a, b)} measured {e:.4g} J, U-shape")
        return lb, why

    def _exempt(self, g: _Group, best: tuple[float, str] | None) -> set[tuple[int, int]]:
        if best is None or best[1] not in self._where or self._where[best[1]][0] is not g:
            return set()
        i, j = self._where[best[1]][1]
        return {(i - 1, j), (i, j - 1), (i, j + 1)}

    def candidates(self, g: _Group) -> list[tuple[int, int]]:
        best = self.best()
        ex = self._exempt(g, best)
        return [ij for ij in sorted(g.cell) if ij not in g.obs and self.prune_reason(g, *ij, best, ex) is None]

    @property
    def pruned(self) -> dict[str, str]:
        """Every configuration not measured, with the rule that excludes it (or NOT_MEASURED)."""
        return self._unmeasured(NOT_MEASURED)

    def pruned_now(self) -> dict[str, str]:
        """The configurations a rule excludes now, with the rule (the live view: a bound can
        be dropped later, when a measurement breaks the rule it rests on)."""
        return {k: why for k, why in self._unmeasured(None).items() if why is not None}

    def _unmeasured(self, default: str | None) -> dict:
        best = self.best()
        out = {}
        for g in self.groups:
            ex = self._exempt(g, best)
            for ij, c in g.cell.items():
                if ij not in g.obs:
                    out[c.key()] = self.prune_reason(g, *ij, best, ex) or default
        return out

    # -- what to measure next ----------------------------------------------------------------
    def next(self) -> Config | None:
        for g in self.groups:
            cand = self.candidates(g)
            ij = None
            if not g.bisected:
                ij = self._bisect(g, cand) if cand else None
                g.bisected = ij is None
            if ij is None and cand:
                ij = self._pick(g, cand)
            if ij is None:
                # last (a server of its own, whenever it runs; the server of the bisection's
                # last B is kept for that row's power limits meanwhile). If it breaks the
                # latency rule, the bounds resting on it go and their configurations come back.
                ij = self._neighbour_check(g)
            if ij is not None:
                return g.cell[ij]
        return None

    def _bracket(self, g: _Group) -> tuple[int, int]:
        """At the highest power limit: the largest B measured to meet the target, and the
        smallest larger one measured over it (-1 / m: none)."""
        top = g.n - 1
        col = {i: o for (i, j), o in g.obs.items() if j == top}
        lo = max((i for i, o in col.items() if self.feasible(o)), default=-1)
        hi = min((i for i, o in col.items() if i > lo and not self.feasible(o)), default=g.m)
        return lo, hi

    def _bisect(self, g: _Group, cand: list[tuple[int, int]]) -> tuple[int, int] | None:
        """Bisection over B at the highest power limit for the largest B that meets the target."""
        lo, hi = self._bracket(g)
        if hi - lo <= 1:
            return None
        ij = ((lo + hi) // 2, g.n - 1)
        return ij if ij in cand else None

    def _neighbour_check(self, g: _Group) -> tuple[int, int] | None:
        """The B past the first one over the target (at the highest limit) must be over it too."""
        top = g.n - 1
        _, hi = self._bracket(g)
        nxt = hi + 1
        if g.bisected and hi < g.m and nxt < g.m and (nxt, top) not in g.obs and g.obs[(hi, top)].ok:
            return (nxt, top)
        return None

    def _pick(self, g: _Group, cand: list[tuple[int, int]]) -> tuple[int, int]:
        """Grid fallbacks first (broken columns/rows), then the highest row with candidates:
        golden-section over its power limits around its best point."""
        for ij in cand:
            if ij[1] in g.lat_col_broken or ij[0] in g.u_row_broken:
                return ij
        i = max(a for a, _ in cand)
        cols = [b for a, b in cand if a == i]
        known: dict[int, float] = {}
        for (a, b), o in g.obs.items():
            if a == i:
                known[b] = float(o.energy_j) if self.feasible(o) else math.inf
        finite = [b for b, e in known.items() if math.isfinite(e)]
        if not finite:
            lo = max((b for b in known if b < min(cols)), default=-1)
            hi = g.n
            target = lo + (hi - lo) * (1 - GOLDEN)  # toward the high limits, where the target is met
        else:
            jb = min(finite, key=lambda b: known[b])
            left = max((b for b in known if b < jb), default=-1)
            right = min((b for b in known if b > jb), default=g.n)
            inner = [b for b in cols if left < b < right]
            if not inner:
                return (i, min(cols, key=lambda b: abs(b - jb)))
            if right - jb >= jb - left:
                target = jb + GOLDEN * (right - jb)
            else:
                target = jb - GOLDEN * (jb - left)
            cols = inner
        return (i, min(cols, key=lambda b: (abs(b - target), -b)))


def _breaks(points: list, value, *, rising: bool, tol: float) -> bool:  # noqa: ANN001
    """Whether values along sorted points break monotonicity by more than ``tol``."""
    vals = [value(o) for _, o in points if value(o) is not None]
    for k in range(len(vals)):
        for v2 in vals[k + 1:]:
            if rising and vals[k] > v2 * (1 + tol):
                return True
            if not rising and vals[k] * (1 + tol) < v2:
                return True
    return False


def _slow_rows(points: list, tol: float) -> set[int]:
    """Rows (B indices) of a column whose latency exceeds a larger B's by more than ``tol``."""
    out = set()
    for k, (a, o) in enumerate(points):
        if any(o.latency_s > o2.latency_s * (1 + tol) for _, o2 in points[k + 1:]):
            out.add(a)
    return out


def _u_shaped(values: list, tol: float) -> bool:  # noqa: ANN001
    vals = [v for v in values if v is not None]
    if len(vals) < 3:
        return True
    k = min(range(len(vals)), key=vals.__getitem__)
    left = all(vals[a] >= vals[a + 1] * (1 - tol) for a in range(k))
    right = all(vals[a + 1] >= vals[a] * (1 - tol) for a in range(k, len(vals) - 1))
    return left and right


def _max_bound(lb: float | None, why: str, value: float, text: str) -> tuple[float, str]:
    return (value, text) if lb is None or value > lb else (lb, why)
