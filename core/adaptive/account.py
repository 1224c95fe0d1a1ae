"""A run directory's sweep account for reports: strategy, GPU time (spent, split by phase,
and for adaptive runs the full grid's estimate), what the adaptive search pruned and why."""

from __future__ import annotations

from pathlib import Path

import msgspec

from .gputime import RunGpuTime, account, summary_line


class SweepAccount(msgspec.Struct, kw_only=True):
    strategy: str = "grid"
    gpu_time: RunGpuTime | None = None
    summary: str = ""
    pruned: dict[str, str] = {}
    notes: list[str] = []
    #: Server reuse across max_num_seqs checked against a relaunched server (verify.json).
    reuse_check: str = ""


def sweep_account(run_dir: Path, records: list, manifest, recommended: str | None = None) -> SweepAccount | None:  # noqa: ANN001
    """From the records, the manifest's profile and ``adaptive.json`` (None: no profile)."""
    from ..profile import decode_profile
    from .plan import read_adaptive
    from .search import NOT_MEASURED

    if manifest is None or not manifest.profile_toml:
        return None
    try:
        profile = decode_profile(manifest.profile_toml, "run.json")
    except Exception:  # noqa: BLE001 - a report without the account is still a report
        return None
    log = read_adaptive(Path(run_dir))
    strategy = "adaptive" if log is not None else profile.sweep.strategy
    counts = sorted({r.num_requests for r in records if r.num_requests})
    d = profile.dataset
    k = d.requests_per_seq
    # N = max(loaded requests, k x B) (sweep_prep.requests_for): a record with N != k x B shows
    # the loaded count; else the profile's (a dataset with fewer requests shows in some record)
    shown = [r.num_requests for r in records if r.num_requests and r.num_requests != k * r.config.batch]
    loaded = min(shown) if shown else d.num_requests * d.repeats

    def n_requests(c) -> int:  # noqa: ANN001
        if k and profile.is_llm:
            return max(loaded, k * c.batch)
        return counts[0] if counts else 0

    gt = account(list(records), profile.configs(), n_requests=n_requests, batches=profile.load.batches,
                 strategy=strategy)
    gt.pruned = sum(why != NOT_MEASURED for why in log.pruned.values()) if log is not None else 0
    return SweepAccount(strategy=strategy, gpu_time=gt, summary=summary_line(gt, recommended),
                        pruned=dict(log.pruned) if log is not None else {},
                        notes=list(log.notes) if log is not None else [], reuse_check=_reuse_line(Path(run_dir)))


def _reuse_line(run_dir: Path) -> str:
    from .verify import VERIFY_FILE, ReuseCheck

    try:
        return msgspec.json.decode((run_dir / VERIFY_FILE).read_bytes(), type=ReuseCheck).line
    except (OSError, msgspec.DecodeError):
        return ""


def sweep_lines(acc: SweepAccount) -> list[str]:
    lines = [f"Sweep ({acc.strategy}): {acc.summary}."]
    if acc.reuse_check:
        lines.append(acc.reuse_check[:1].upper() + acc.reuse_check[1:] + ".")
    if acc.notes:
        lines += [f"  rule check: {n}" for n in acc.notes]
    if acc.pruned:
        lines.append(f"Pruned by the adaptive search ({len(acc.pruned)}), with the rule that pruned each:")
        lines += [f"  {k}: {why}" for k, why in acc.pruned.items()]
    return lines
