"""Server reuse across max_num_seqs (opt-in, ``server.reuse_across_max_num_seqs``): one server
started with the sweep's largest max_num_seqs serves every B, the client's concurrency capped at
B, so the running batch is held at B as a server started with B would hold it. Whether that
gives the same result is checked in the run: the runner measures one configuration again on a
relaunched server (``verify/``) and reports both."""

from __future__ import annotations

from ..config import Config
from ..measure.trace import CLIENT_CAPPED
from ..profile import Profile


def shared_batch(profile: Profile) -> int | None:
    """The max_num_seqs every server of the run starts with, or None (one per B)."""
    bs = profile.sweep.axis("max_num_seqs")
    if not (profile.is_llm and profile.server.reuse_across_max_num_seqs and len(bs) > 1):
        return None
    return max(bs)


def server_batch(profile: Profile, cfg: Config) -> int:
    return shared_batch(profile) or cfg.batch


def client_cap(profile: Profile, cfg: Config) -> int:
    """The client's concurrency cap (0 = none): the profile's, and at most B on a shared server."""
    cap = profile.load.max_concurrency
    if shared_batch(profile) is None:
        return cap
    return min(cap, cfg.batch) if cap else cfg.batch


def server_mode(profile: Profile, cfg: Config, reused: bool) -> str:
    """``RecordHead.server_mode`` for a configuration run this way."""
    shared = shared_batch(profile)
    if shared is not None:
        return (f"{'reused' if reused else 'started'} server with max_num_seqs {shared}, "
                f"{CLIENT_CAPPED} at {cfg.batch}")
    return "reused across power limits" if reused else ""
