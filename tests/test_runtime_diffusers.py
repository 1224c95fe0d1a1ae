"""The diffusers runtime on the CPU with the simulated GPU.

End to end through ``mle-tui run --headless`` (in-process, so diffusers is imported once and the
pipeline can be patched): eq. 1 recomputed from each record's batches, warm-up kept out, the
batch-size trace at B during every measured batch, an OOM at one batch size giving a ``failed``
record while the sweep goes on, and non-finite images refused. ``tiny-sd`` is a test shape
(16x16 images, 4 steps), so the module takes seconds.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from mle_tui.core.runtimes.diffusers_rt import char_clip_tokenizer  # noqa: E402
from mle_tui.core.runtimes.inprocess import load_shape  # noqa: E402
from mle_tui.tui.cli import main  # noqa: E402
from inprocess_helpers import records_by_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "tiny-diffusion-cpu.toml"


def _profile_copy(tmp_path: Path, **replace: str) -> Path:
    text = PROFILE.read_text().replace(
        'path = "../tests/assets/partiprompts-sample.tsv"',
        f'path = "{REPO / "tests" / "assets" / "partiprompts-sample.tsv"}"',
    )
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "profile.toml"
    path.write_text(text)
    return path


def test_char_tokenizer_needs_no_files_and_tells_prompts_apart() -> None:
    tok = char_clip_tokenizer()
    enc = tok(["a red fox", "a blue whale", "a red fox"], padding="max_length", max_length=77, truncation=True)
    ids = enc.input_ids
    assert all(len(x) == 77 for x in ids)
    assert ids[0] == ids[2] and ids[0] != ids[1]
    assert ids[0][0] == tok.bos_token_id and len(set(ids[0][1:8])) > 3
    assert max(max(x) for x in ids) < 1000  # fits the tiny text encoder's vocabulary


def test_shipped_shapes_are_the_real_architectures() -> None:
    counts = {}
    for name in ("sd-2.1", "sdxl"):
        shape = load_shape(name, "diffusion pipeline")
        with torch.device("meta"):
            unet = diffusers.UNet2DConditionModel(**shape["unet"])
        counts[name] = sum(p.numel() for p in unet.parameters())
    assert abs(counts["sd-2.1"] - 865.9e6) < 1e6  # SD 2.1 UNet: 866 M parameters
    assert abs(counts["sdxl"] - 2567.5e6) < 2e6  # SDXL UNet: 2.57 B parameters
    assert load_shape("stabilityai/stable-diffusion-2-1", "x")["unet"]["cross_attention_dim"] == 1024


def test_end_to_end_cli(tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    assert main(["run", str(PROFILE), "--headless", "--out", str(out)]) == 0
    recs = records_by_key(out)
    assert sorted(recs) == ["bs1-steps4-tp1-pldefault", "bs2-steps4-tp1-pldefault"]
    for rec in recs.values():
        B = rec.config.batch_size
        assert rec.status == "ok", rec.reasons
        assert rec.runtime == "diffusers" and rec.weights == "dummy" and rec.simulated
        assert rec.log_tail[0].startswith("weights: dummy, init normal(0, 0.02), norm weights 1, biases 0, seed 0")
        warm = [b for b in rec.batches if b.warmup]
        measured = [b for b in rec.batches if not b.warmup]
        assert len(warm) == 1 and len(measured) == 2
        assert all(b.batch_size == B for b in rec.batches)
        assert warm[0].end_s <= measured[0].start_s
        for b in rec.batches:
            assert b.latency_s == pytest.approx(b.end_s - b.start_s) and b.latency_s > 0
            assert math.isfinite(b.energy_j) and b.energy_j > 0
        # Eq. 1 from the record's own batches: mean batch energy / B.
        mean_batch_j = sum(b.energy_j for b in measured) / len(measured)
        assert rec.energy_per_image_j == pytest.approx(mean_batch_j / B, rel=1e-9)
        assert rec.energy_per_request_j == pytest.approx(rec.energy_per_image_j)
        assert rec.latency.batch_latency is not None
        assert rec.latency.batch_latency.mean_s == pytest.approx(sum(b.latency_s for b in measured) / 2)
        # Batch trace: B while a batch runs (sampled at 10 Hz), 0 between batches.
        bt = rec.batch_timeline
        assert bt.source.startswith("diffusers") and max(bt.running) == B and min(bt.running) == 0
        assert set(bt.running) <= {0.0, float(B)}
        for b in measured:
            inside = [r for t, r in zip(bt.t_s, bt.running) if b.start_s <= t <= b.end_s]
            assert inside and all(r == B for r in inside)


def test_oom_is_a_failed_record_and_the_sweep_goes_on(tmp_path: Path, one_thread: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    original = diffusers.StableDiffusionPipeline.__call__

    def call(self, *args, **kwargs):  # noqa: ANN001, ANN202 - patched pipeline method
        if len(kwargs.get("prompt") or []) >= 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.00 GiB")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "__call__", call)
    profile = _profile_copy(tmp_path, **{"batch_size = [1, 2]": "batch_size = [1, 2, 4]"})
    out = tmp_path / "run"
    assert main(["run", str(profile), "--headless", "--out", str(out)]) == 1  # failed configs
    recs = records_by_key(out)
    assert recs["bs1-steps4-tp1-pldefault"].status == "ok"
    assert recs["bs1-steps4-tp1-pldefault"].energy_per_image_j > 0
    for b in (2, 4):
        rec = recs[f"bs{b}-steps4-tp1-pldefault"]
        assert rec.status == "failed" and rec.reasons == [f"CUDA out of memory at batch {b}"]
        assert rec.energy_per_image_j is None


def test_non_finite_images_fail_the_configuration(tmp_path: Path, one_thread: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    original = diffusers.StableDiffusionPipeline.__call__

    def call(self, *args, **kwargs):  # noqa: ANN001, ANN202 - patched pipeline method
        result = original(self, *args, **kwargs)
        if len(kwargs["prompt"]) == 2:
            result.images[0, 0, 0, 0] = float("nan")
        return result

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "__call__", call)
    out = tmp_path / "run"
    assert main(["run", str(_profile_copy(tmp_path)), "--headless", "--out", str(out)]) == 1
    recs = records_by_key(out)
    assert recs["bs1-steps4-tp1-pldefault"].status == "ok"
    bad = recs["bs2-steps4-tp1-pldefault"]
    assert bad.status == "failed" and bad.reasons[0].startswith("non-finite images at batch 2")
