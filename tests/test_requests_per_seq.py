"""dataset.requests_per_seq: N >= k x B per configuration, by cycling the sampled requests."""

from __future__ import annotations

from pathlib import Path

from mle_tui.core.profile import decode_profile
from mle_tui.core.runner import SweepRunner

PROFILE = """
name = "rps"
task = "chat"
runtime = "sim"
[model]
id = "sim-llm"
weights = "dummy"
[dataset]
name = "synthetic"
num_requests = 24
requests_per_seq = 10
min_output_tokens = 16
max_output_tokens = 32
[sweep]
max_num_seqs = [2, 8]
[steady_state]
min_window_s = 0.5
[gpu]
simulated = true
allow_simulated = true
"""


def test_each_configuration_gets_k_times_b_requests(tmp_path: Path) -> None:
    profile = decode_profile(PROFILE, "rps.toml")
    runner = SweepRunner(profile, tmp_path / "run", allow_simulated=True)
    summary = runner.run()
    assert summary.completed + summary.invalid == 2
    records = {r.config.max_num_seqs: r for r in runner.store.load_records()}
    # B=2: max(24, 20) = 24 (the sampled set is never cut); B=8: max(24, 80) = 80.
    assert records[2].num_requests == 24
    assert records[8].num_requests == 80
    assert len(records[8].requests) == 80
    assert sorted(r.id for r in records[8].requests) == list(range(80))
