"""Model-level scenarios for the adaptive sweep (tests and tests/bench_adaptive.py): a
B x power-limit table of true latency and energy per request from a small physical model,
noisy measurements of it, and the GPU time each configuration costs.

Model (calibrated on the shipped H200 Llama-3.1-8B records, records/README.md section 0):
TPOT at full speed ``a + c B``; power drawn at full speed ``P_idle + (P_top - P_idle)(0.35 +
0.6 B / (B + 48))`` (the sim server's utilisation curve); under a lower limit the clock slows to
``x^(1/k)`` of full speed, ``x = (PL - P_s) / (P_draw - P_s)`` (so energy is U-shaped in the
limit, its minimum at ``x = P_s / ((k - 1) D)``); energy per request = power x TPOT x output
tokens / B. Optional "non-monotone" points (a slow or cheap outlier, an unstable large B).

GPU time of one configuration: a server start when B changes from the previous
configuration (grid order reuses it across power limits), ramp-up, the steady window and
ramp-down. The full window is the time of (k - 1) waves of B requests; an early stop ends it
after the batch-means rule is met on blocks whose energy per token scatters with
``block_cv`` (drawn from the shipped traces' 2-s blocks: ``BLOCK_CV_H200``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from mle_tui.core.adaptive.search import AdaptiveSearch, Obs
from mle_tui.core.adaptive.spec import AdaptiveSpec
from mle_tui.core.adaptive.stopping import predicted_blocks
from mle_tui.core.config import Config

#: Scatter (sd / mean) of energy per token over 2-s blocks of the steady window in the shipped
#: H200 traces (records/h200-vllm-llama3.1-8b-dummy, h200x2-*; bench_adaptive.py prints them):
#: scenarios draw their block scatter from these.
BLOCK_CV_H200 = [0.017, 0.025, 0.028, 0.039, 0.041, 0.047, 0.053, 0.054, 0.054, 0.055, 0.063, 0.078,
                 0.090, 0.106, 0.144, 0.174, 0.210]
MEAN_OUT = 210  # output tokens per request (ShareGPT, H200 records)
K_PER_SEQ = 16  # requests per unit of B (the H200 profile's N = 16 x B)


@dataclass
class Scenario:
    bs: list[int]
    pls: list[int]
    target_s: float
    lat: dict[tuple[int, int], float]
    energy: dict[tuple[int, int], float]
    unstable: set[tuple[int, int]] = field(default_factory=set)
    noise_e: float = 0.005
    noise_l: float = 0.005
    block_cv: float = 0.03
    server_start_s: float = 90.0
    seed: int = 0
    label: str = ""

    def configs(self) -> list[Config]:
        return [Config(max_num_seqs=b, power_limit_w=p) for b in self.bs for p in self.pls]

    def truth_best(self) -> tuple[int, int] | None:
        ok = [(self.energy[c], c) for c in self.lat if self.lat[c] <= self.target_s and c not in self.unstable]
        return min(ok)[1] if ok else None

    def measure(self, b: int, p: int, rng: random.Random) -> Obs:
        if (b, p) in self.unstable:
            return Obs(ok=False, failed=True)
        return Obs(ok=True, energy_j=self.energy[(b, p)] * (1 + rng.gauss(0, self.noise_e)),
                   latency_s=self.lat[(b, p)] * (1 + rng.gauss(0, self.noise_l)))

    # -- GPU time -------------------------------------------------------------------------
    def run_s(self, b: int, p: int, early: AdaptiveSpec | None, rng: random.Random,
              min_window_s: float = 20.0) -> float:
        tpot = self.lat[(b, p)]
        ramp_up = 1.0 + b * 0.01 + 3 * tpot * 10
        ramp_down = MEAN_OUT * tpot
        window = (K_PER_SEQ - 2) * MEAN_OUT * tpot
        if early is not None and (b, p) not in self.unstable:
            blocks = int(window // early.block_s)
            ratios = [1 + rng.gauss(0, self.block_cv) for _ in range(max(0, blocks))]
            n = predicted_blocks(ratios, early, min_window_s)
            if n is not None:
                return ramp_up + n * early.block_s + 1.2 + 2.0  # settle, abort and drain
        return ramp_up + window + ramp_down


def make(seed: int, *, nonmonotone: bool | None = None) -> Scenario:
    rng = random.Random(seed)
    bs = [16, 32, 64, 128, 256, 512]
    if rng.random() < 0.3:
        bs = bs[rng.randrange(0, 2):len(bs) - rng.randrange(0, 2)]
    pls = list(range(250, 701, 50))
    if rng.random() < 0.3:
        pls = list(range(rng.choice([200, 250, 300]), 701, rng.choice([50, 100])))
    a = rng.uniform(0.004, 0.008)
    c = rng.uniform(0.00002, 0.00006)
    p_idle = rng.uniform(70, 130)
    p_top = rng.uniform(600, 850)
    p_s = rng.uniform(120, 300)
    k = rng.uniform(1.6, 3.5)
    lat, energy = {}, {}
    for b in bs:
        draw = p_idle + (p_top - p_idle) * (0.35 + 0.6 * b / (b + 48))
        for p in pls:
            if draw <= p:
                speed, power = 1.0, draw
            else:
                x = max(0.02, (p - p_s) / (draw - p_s))
                speed, power = x ** (1 / k), p
            tpot = (a + c * b) / speed
            lat[(b, p)] = tpot
            energy[(b, p)] = power * tpot * MEAN_OUT / b
    vals = sorted(lat.values())
    target = vals[int(rng.uniform(0.15, 0.9) * (len(vals) - 1))] * rng.uniform(0.98, 1.02)
    sc = Scenario(bs=bs, pls=pls, target_s=target, lat=lat, energy=energy, seed=seed,
                  noise_e=math.exp(rng.uniform(math.log(0.003), math.log(0.01))),
                  noise_l=math.exp(rng.uniform(math.log(0.003), math.log(0.01))),
                  block_cv=rng.choice(BLOCK_CV_H200), server_start_s=rng.uniform(60, 110))
    bad = rng.random() < 0.35 if nonmonotone is None else nonmonotone
    if bad:
        kinds = []
        for _ in range(rng.randint(1, 2)):
            b, p = rng.choice(bs), rng.choice(pls)
            kind = rng.choice(["slow", "cheap", "dear", "unstable"])
            if kind == "slow":
                lat[(b, p)] *= rng.uniform(1.1, 1.4)
            elif kind == "cheap":
                energy[(b, p)] *= rng.uniform(0.85, 0.95)
            elif kind == "dear":
                energy[(b, p)] *= rng.uniform(1.05, 1.2)
            elif b == bs[-1]:
                sc.unstable |= {(b, q) for q in pls}
            kinds.append(f"{kind}@{b}/{p}")
        sc.label = "non-monotone: " + ", ".join(kinds)
    return sc


def recommend(results: dict[tuple[int, int], Obs], target_s: float) -> tuple[int, int] | None:
    ok = [(o.energy_j, o.latency_s, c) for c, o in results.items()
          if o.ok and o.latency_s is not None and o.latency_s <= target_s]
    return min(ok)[2] if ok else None


def run_grid(sc: Scenario, rng: random.Random, results: dict | None = None) -> tuple[tuple[int, int] | None, float, int]:
    """(recommendation, GPU seconds, configurations) of the full grid in profile order;
    ``results`` (if given) receives every measurement."""
    results, t, prev = (results if results is not None else {}), 0.0, None
    for b in sc.bs:
        for p in sc.pls:
            if b != prev:
                t += sc.server_start_s
                prev = b
            results[(b, p)] = sc.measure(b, p, rng)
            t += sc.run_s(b, p, None, rng) + 2.0  # + setting the limit, idle between
    return recommend(results, sc.target_s), t, len(results)


def run_adaptive(sc: Scenario, rng: random.Random, spec: AdaptiveSpec | None = None,
                 early: bool = True, reuse: bool = False,
                 replay: dict | None = None) -> tuple[tuple[int, int] | None, float, int, AdaptiveSearch]:
    """``reuse``: one server for every B (server.reuse_across_max_num_seqs), plus the check of
    one point on a relaunched server at the end. ``replay``: take each measurement from a grid
    run's (the search over a grid measured before: only the search can differ)."""
    spec = spec or AdaptiveSpec()
    search = AdaptiveSearch(sc.configs(), sc.target_s, spec)
    results, t, prev = {}, 0.0, None
    while (cfg := search.next()) is not None:
        b, p = cfg.max_num_seqs, cfg.power_limit_w
        if b != prev and not (reuse and prev is not None):
            t += sc.server_start_s
            prev = b
        o = replay[(b, p)] if replay is not None else sc.measure(b, p, rng)  # type: ignore[arg-type]
        results[(b, p)] = o
        t += sc.run_s(b, p, spec if early else None, rng) + 2.0  # type: ignore[arg-type]
        search.observe(cfg, o)
    rec = recommend(results, sc.target_s)
    if reuse and rec is not None:  # the relaunched check of one point
        t += sc.server_start_s + sc.run_s(*rec, spec if early else None, rng) + 2.0
    return rec, t, len(results), search
