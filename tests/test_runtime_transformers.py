"""The transformers continuous-batching runtime on the CPU with the simulated GPU.

End to end through ``mle-tui run --headless`` (called in-process so torch is imported once and
the OOM can be simulated by patching the model): eq. 2 recomputed from each record's own fields,
the batch-size trace reaching max_num_seqs, exact output lengths with EOS disabled, and an OOM at
one max_num_seqs giving a ``failed`` record while the sweep goes on. The profiles use tiny shapes
and ``steady_state.min_window_s = 0.5`` (20 s in real profiles) so the whole module takes seconds.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mle_tui.core.datasets import load_requests  # noqa: E402
from mle_tui.core.dummy_init import DUMMY_STD, init_dummy_  # noqa: E402
from mle_tui.core.errors import InputError  # noqa: E402
from mle_tui.core.profile import load_profile  # noqa: E402
from mle_tui.core.runtimes.inprocess import load_shape  # noqa: E402
from mle_tui.tui.cli import main  # noqa: E402
from inprocess_helpers import records_by_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "tiny-transformers-cpu.toml"


def test_dummy_init_scheme() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = load_shape("tiny-llama", "LLM")
    config = AutoConfig.for_model(shape.pop("model_type"), **shape)
    a = init_dummy_(AutoModelForCausalLM.from_config(config), seed=3)
    b = init_dummy_(AutoModelForCausalLM.from_config(config), seed=3)
    c = init_dummy_(AutoModelForCausalLM.from_config(config), seed=4)
    pa, pb, pc = dict(a.named_parameters()), dict(b.named_parameters()), dict(c.named_parameters())
    random_params = 0
    for name, p in pa.items():
        assert torch.equal(p, pb[name]), f"{name} not deterministic for one seed"
        if "norm" in name:
            assert torch.all(p == 1.0), name
        else:
            random_params += 1
            assert abs(p.std().item() - DUMMY_STD) < 0.1 * DUMMY_STD, name
            assert abs(p.mean().item()) < 0.1 * DUMMY_STD, name
            assert not torch.equal(p, pc[name]), f"{name} does not depend on the seed"
    assert random_params >= 10

    mod = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.GroupNorm(4, 64))
    init_dummy_(mod, seed=0)
    assert torch.all(mod[0].bias == 0) and torch.all(mod[1].weight == 1) and torch.all(mod[1].bias == 0)
    assert torch.all(mod[2].weight == 1) and torch.all(mod[2].bias == 0)
    assert torch.count_nonzero(mod[0].weight) == mod[0].weight.numel()


def test_llama_8b_shape_is_the_real_one() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = load_shape("meta-llama/Llama-3.1-8B-Instruct", "LLM")
    assert shape["hidden_size"] == 4096 and shape["num_hidden_layers"] == 32
    config = AutoConfig.for_model(shape.pop("model_type"), **shape)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 8.03e9) < 0.01e9, n


def test_unknown_dummy_shape_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_shape(str(tmp_path / "nope"), "LLM")
    assert err.value.field == "model.id" and "llama-3.1-8b" in err.value.problem


def test_end_to_end_cli(tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    assert main(["run", str(PROFILE), "--headless", "--out", str(out)]) == 0
    recs = records_by_key(out)
    profile = load_profile(PROFILE)
    wanted = {r.id: r.output_tokens for r in load_requests(profile, vocab_size=1024)}
    assert sorted(recs) == ["mns4-tp1-pldefault", "mns8-tp1-pldefault"]
    for rec in recs.values():
        B = rec.config.max_num_seqs
        assert rec.status == "ok", rec.reasons
        assert rec.runtime == "transformers" and rec.weights == "dummy" and rec.simulated
        assert rec.log_tail[0].startswith("weights: dummy, init normal(0, 0.02), norm weights 1, biases 0, seed 0")
        # Fixed output lengths (EOS disabled): every request got exactly its reference length.
        assert len(rec.requests) == len(wanted)
        assert all(r.ok and r.output_tokens == wanted[r.id] and not r.hit_cap for r in rec.requests)
        assert not rec.reasons  # no token-cap warning: prescribed lengths, as with vLLM ignore_eos
        assert rec.server_output_tokens == sum(wanted.values())
        # Eq. 2 from the record's own fields.
        ss = rec.steady_state
        assert ss is not None and ss.rule == "saturation" and ss.tokens > 0 and ss.energy_j > 0
        mean_out = sum(r.output_tokens for r in rec.requests) / len(rec.requests)
        assert rec.mean_output_tokens == pytest.approx(mean_out)
        assert rec.energy_per_request_j == pytest.approx(ss.energy_j / ss.tokens * mean_out, rel=1e-9)
        assert rec.energy_per_token_j == pytest.approx(ss.energy_j / ss.tokens, rel=1e-9)
        # Batch-size trace from the scheduler: reaches B, never exceeds it, saturated in the window.
        bt = rec.batch_timeline
        assert bt.source.startswith("transformers scheduler") and len(bt.t_s) >= 5
        assert max(bt.running) == B and min(bt.running) >= 0
        assert bt.t_s == sorted(bt.t_s)
        assert ss.mean_batch >= 0.85 * B
        assert any(w > 0 for w in bt.waiting)
        # Latency with vLLM bench serve definitions.
        assert rec.latency.itl is not None and rec.latency.itl.count == sum(r.output_tokens - 1 for r in rec.requests)
        for r in rec.requests:
            assert r.send_s <= r.first_token_s <= r.end_s
            assert r.tpot_s == pytest.approx((r.e2e_s - r.ttft_s) / (r.output_tokens - 1))
        assert math.isfinite(rec.latency_value_s) and rec.latency_value_s > 0


def test_oom_is_a_failed_record_and_the_sweep_goes_on(tmp_path: Path, one_thread: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import LlamaForCausalLM

    original = LlamaForCausalLM.forward

    def forward(self, *args, **kwargs):  # noqa: ANN001, ANN202 - patched model method
        cu = kwargs.get("cu_seq_lens_q")
        if cu is not None and cu.numel() - 1 > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", forward)
    text = PROFILE.read_text().replace("max_num_seqs = [4, 8]", "max_num_seqs = [2, 4]")
    text = text.replace("num_requests = 128", "num_requests = 12")
    assert "num_requests = 12" in text
    assert "max_num_seqs = [2, 4]" in text
    profile = tmp_path / "oom.toml"
    profile.write_text(text)
    out = tmp_path / "run"
    assert main(["run", str(profile), "--headless", "--out", str(out)]) == 1  # one failed config
    recs = records_by_key(out)
    assert recs["mns4-tp1-pldefault"].status == "failed"
    assert recs["mns4-tp1-pldefault"].reasons == ["CUDA out of memory at max_num_seqs 4"]
    ok = recs["mns2-tp1-pldefault"]
    assert ok.status != "failed" and ok.energy_per_request_j is not None and ok.energy_per_request_j > 0
    assert max(ok.batch_timeline.running) == 2
