"""Check server reuse across max_num_seqs in the run itself: the recommended configuration
(measured on the shared server) is measured again on a server started with its own B, into
``verify/`` of the run directory; both results go to ``verify.json`` and the log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from ..config import Config
from ..profile import Profile
from ..records import RecordHead

VERIFY_DIR = "verify"
VERIFY_FILE = "verify.json"
#: Relative difference (energy per request, latency) up to which the reuse is called the same.
SAME_WITHIN = 0.03


class ReuseCheck(msgspec.Struct, kw_only=True):
    config_key: str
    reused_mode: str
    relaunched_status: str
    reused_energy_j: float | None = None
    relaunched_energy_j: float | None = None
    reused_latency_s: float | None = None
    relaunched_latency_s: float | None = None
    energy_diff: float | None = None
    latency_diff: float | None = None
    same: bool = False
    line: str = ""


def relaunch_profile(profile: Profile) -> Profile:
    """The profile a relaunched point runs with: a server of its own B."""
    return msgspec.structs.replace(profile, server=msgspec.structs.replace(
        profile.server, reuse_across_max_num_seqs=False))


def _rel(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b - 1.0


def compare(reused: RecordHead, relaunched: RecordHead) -> ReuseCheck:
    de = _rel(reused.energy_per_request_j, relaunched.energy_per_request_j)
    dl = _rel(reused.latency_value_s, relaunched.latency_value_s)
    same = (relaunched.status == "ok" and de is not None and dl is not None
            and abs(de) <= SAME_WITHIN and abs(dl) <= SAME_WITHIN)
    fmt = lambda x: "?" if x is None else f"{x:+.1%}"  # noqa: E731
    line = (f"server reuse check on {reused.config_key}: relaunched server gives J/request {fmt(de)} and "
            f"latency {fmt(dl)} against the shared server's ({'the same' if same else 'NOT the same'} "
            f"within {SAME_WITHIN:.0%}; records: records/ and {VERIFY_DIR}/records/)")
    return ReuseCheck(config_key=reused.config_key, reused_mode=reused.server_mode,
                      relaunched_status=relaunched.status, reused_energy_j=reused.energy_per_request_j,
                      relaunched_energy_j=relaunched.energy_per_request_j, reused_latency_s=reused.latency_value_s,
                      relaunched_latency_s=relaunched.latency_value_s, energy_diff=de, latency_diff=dl,
                      same=same, line=line)


def verify_reuse(run_dir: Path, reused: RecordHead, cfg: Config,
                 run_one: Callable[[Config, Path], RecordHead | None]) -> ReuseCheck | None:
    """Run ``cfg`` again on a relaunched server (``run_one(cfg, verify_dir)``) and compare."""
    relaunched = run_one(cfg, Path(run_dir) / VERIFY_DIR)
    if relaunched is None:
        return None
    check = compare(reused, relaunched)
    try:
        (Path(run_dir) / VERIFY_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(check), indent=1))
    except OSError:
        pass
    return check
