"""Visual chat in process on the CPU: a tiny LLaVA-shaped model (random init) through
transformers, run by ``mle-tui run --headless`` on profiles/tiny-vlm-cpu.toml with the
simulated GPU. Checked from the records: every request's image tokens (576 per image, as
LLaVA-1.5, plus its delimiter tokens), the text/image split, exact output lengths, the batch
trace at max_num_seqs and eq. 2 from the record's own fields."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from inprocess_helpers import records_by_key  # noqa: E402

from mle_tui.core.profile import load_profile  # noqa: E402
from mle_tui.tui.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "tiny-vlm-cpu.toml"


def test_tiny_llava_end_to_end(tmp_path: Path, one_thread: None, monkeypatch, capsys) -> None:
    from mle_tui.core.runtimes.transformers_vlm import TransformersVlmRuntime

    monkeypatch.setenv("MLE_TUI_MODEL_CACHE", str(tmp_path / "models"))
    out = tmp_path / "run"
    assert main(["run", str(PROFILE), "--headless", "--out", str(out)]) == 0
    profile = load_profile(PROFILE)
    wanted = {r.id: r for r in TransformersVlmRuntime().load_requests(profile)}
    recs = records_by_key(out)
    assert sorted(recs) == ["mns2-tp1-pldefault", "mns4-tp1-pldefault"]
    for rec in recs.values():
        B = rec.config.max_num_seqs
        assert rec.status == "ok", rec.reasons
        assert rec.task == "visual-chat" and rec.runtime == "transformers" and rec.simulated
        assert rec.log_tail[0].startswith("weights: dummy, init normal(0, 0.02)")
        assert len(rec.requests) == len(wanted) == profile.dataset.num_requests
        for r in rec.requests:
            req = wanted[r.id]
            assert r.ok and r.output_tokens == req.output_tokens and not r.hit_cap
            assert r.images == 1 and r.image_source == "synthetic"
            # prompt tokens from the processor (text + 576 image tokens), minus the text-only
            # prompt under the same chat template: 576 + "\n" after <image>, the split-off space
            # and (a 1k-token vocabulary) the text's first word split differently after "\n"
            assert 576 <= r.image_tokens <= 576 + 6
            assert r.input_tokens == req.input_tokens + r.image_tokens
        pt = rec.prompt_tokens
        assert pt.image_source == "synthetic" and pt.images == len(wanted)
        assert pt.text_tokens == sum(q.input_tokens for q in wanted.values())
        assert pt.image_share == pytest.approx(pt.image_tokens / (pt.text_tokens + pt.image_tokens))
        assert 0.5 < pt.image_share < 1.0
        # eq. 2 from the record's own fields
        ss = rec.steady_state
        assert ss is not None and ss.rule == "saturation" and ss.tokens > 0 and ss.energy_j > 0
        assert ss.mean_batch >= 0.85 * B
        assert rec.energy_per_request_j == pytest.approx(ss.energy_j / ss.tokens * rec.mean_output_tokens, rel=1e-9)
        assert rec.server_output_tokens == sum(q.output_tokens for q in wanted.values())
        bt = rec.batch_timeline
        assert bt.source.startswith("transformers static batches") and max(bt.running) == B
        assert any(w > 0 for w in bt.waiting) and bt.t_s == sorted(bt.t_s)
        for r in rec.requests:
            assert r.send_s <= r.first_token_s <= r.end_s
            assert r.tpot_s == pytest.approx((r.e2e_s - r.ttft_s) / (r.output_tokens - 1))
        assert math.isfinite(rec.latency_value_s) and rec.latency_value_s > 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    share = min(r.prompt_tokens.image_share for r in recs.values())
    assert f"Image tokens: {share:.0%} of prompt tokens (synthetic images)." in text
    # the traces reproduce the split (mle-tui reanalyse: the same pure analysis)
    assert main(["reanalyse", str(out)]) == 0
    again = records_by_key(out / "reanalysed")
    assert {k: r.prompt_tokens for k, r in again.items()} == {k: r.prompt_tokens for k, r in recs.items()}
    assert {k: r.energy_per_request_j for k, r in again.items()} == {k: r.energy_per_request_j for k, r in recs.items()}
