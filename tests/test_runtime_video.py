"""Text-to-video and image-to-video on diffusers, on the CPU with the simulated GPU.

End to end through ``mle-tui run --headless`` with the tiny shapes (``tiny-t2v``: ModelScope's
TextToVideoSDPipeline, ``tiny-svd``: StableVideoDiffusionPipeline with synthetic first frames,
``tiny-wan``: WanPipeline): eq. 1 per video recomputed from each record's batches, the phases
(encode < denoise steps < decode) of every batch present and ordered on the run clock and adding
up to the batch's energy, media saved when asked. The shipped full-size shapes are checked to be
the real architectures (parameter counts on the meta device), and profile validation of the new
fields.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from mle_tui.core.errors import InputError  # noqa: E402
from mle_tui.core.first_frames import attach_first_frames  # noqa: E402
from mle_tui.core.measure.phases import label, spans_from_marks  # noqa: E402
from mle_tui.core.measure.trace import Mark  # noqa: E402
from mle_tui.core.profile import decode_profile, load_profile  # noqa: E402
from mle_tui.core.report import build_report  # noqa: E402
from mle_tui.core.runtimes.inprocess import load_shape  # noqa: E402
from mle_tui.core.runtimes.video_pipelines import _model  # noqa: E402
from mle_tui.core.shipped import list_profiles  # noqa: E402
from mle_tui.tui.cli import main  # noqa: E402
from inprocess_helpers import records_by_key  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROFILES = REPO / "profiles"
TSV = REPO / "tests" / "assets" / "partiprompts-sample.tsv"


def _copy(name: str, tmp_path: Path, **replace: str) -> Path:
    text = (PROFILES / f"{name}.toml").read_text().replace(
        'path = "../tests/assets/partiprompts-sample.tsv"', f'path = "{TSV}"')
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _check_video_record(rec, steps: int) -> None:  # noqa: ANN001
    B = rec.config.batch_size
    assert rec.status == "ok", rec.reasons
    assert rec.task in ("text-to-video", "image-to-video") and rec.runtime == "diffusers" and rec.simulated
    measured = [b for b in rec.batches if not b.warmup]
    assert len(measured) == 2 and len([b for b in rec.batches if b.warmup]) == 1
    # Eq. 1 per video from the record's own batches: mean batch energy / B.
    assert all(math.isfinite(b.energy_j) and b.energy_j > 0 for b in rec.batches)
    per_video = sum(b.energy_j for b in measured) / len(measured) / B
    assert rec.energy_per_video_j == pytest.approx(per_video, rel=1e-9)
    assert rec.energy_per_request_j == pytest.approx(per_video, rel=1e-9)
    assert rec.energy_per_image_j is None and rec.throughput.images_per_s is None
    assert rec.throughput.videos_per_s == pytest.approx(sum(b.batch_size for b in measured)
                                                        / sum(b.latency_s for b in measured))
    # Phases: encode, denoise, decode for every batch (warm-up included), in order, within the
    # batch's bracket; every denoising step's end inside the denoise span, ascending.
    by_batch: dict[int, list] = {}
    for p in rec.phases:
        by_batch.setdefault(p.batch, []).append(p)
    assert sorted(by_batch) == [b.index for b in rec.batches]
    for b in rec.batches:
        enc, den, dec = by_batch[b.index]
        assert (enc.phase, den.phase, dec.phase) == ("encode", "denoise", "decode")
        assert enc.warmup == den.warmup == dec.warmup == b.warmup
        assert enc.start_s == pytest.approx(b.start_s) and dec.end_s == pytest.approx(b.end_s)
        assert enc.start_s < enc.end_s <= den.start_s < den.end_s <= dec.start_s < dec.end_s
        assert len(den.step_ends_s) == steps
        assert den.step_ends_s == sorted(den.step_ends_s)
        assert den.start_s < den.step_ends_s[0] and den.step_ends_s[-1] <= den.end_s
        # The spans tile the batch, so their energies add up to the batch's.
        assert sum(p.energy_j for p in (enc, den, dec)) == pytest.approx(b.energy_j, rel=1e-6)
        assert all(p.energy_j > 0 for p in (enc, den, dec))


def test_text_to_video_end_to_end_with_media(tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    assert main(["run", str(_copy("tiny-t2v-cpu", tmp_path)), "--headless", "--out", str(out)]) == 0
    recs = records_by_key(out)
    assert sorted(recs) == ["bs1-steps3-f4-tp1-pldefault", "bs2-steps3-f4-tp1-pldefault"]
    for key, rec in recs.items():
        _check_video_record(rec, steps=3)
        assert rec.config.num_frames == 4
        assert rec.log_tail[0].startswith("weights: dummy, init normal(0, 0.02)")
        media = sorted((out / "media" / key).iterdir())
        # Measured batches only (warm-up not saved), one file per video, 4 frames each.
        assert len(media) == 2 * rec.config.batch_size
        from PIL import Image

        with Image.open(media[0]) as im:
            assert im.size == (16, 16) and getattr(im, "n_frames", 1) == 4
    # The phases come from the trace's marks: a reanalysis of the trace gives the same record.
    from mle_tui.core.measure.analysis import analyse
    from mle_tui.core.measure.trace import decode_trace

    for key, rec in recs.items():
        trace = decode_trace((out / "traces" / f"{key}.msgpack.gz").read_bytes())
        again = analyse(trace, trace_file=f"traces/{key}.msgpack.gz")
        assert again.phases == rec.phases and again.energy_per_video_j == rec.energy_per_video_j
    # The report's timeline figure draws the phases (matplotlib, the test extra).
    from mle_tui.core.figures.timeline import phases_of

    rec = recs["bs2-steps3-f4-tp1-pldefault"]
    assert [p.name for p in phases_of(rec)] == ["encode", "denoise", "decode"] * 3
    assert main(["report", str(out), "--plot", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "timeline-bs2-steps3-f4-tp1-pldefault.png").stat().st_size > 10_000
    report = build_report(list(recs.values()))
    assert {r.unit for r in report.rows} == {"video"} and {r.throughput_unit for r in report.rows} == {"video/s"}


def test_image_to_video_with_synthetic_first_frames(tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    assert main(["run", str(_copy("tiny-i2v-cpu", tmp_path)), "--headless", "--out", str(out)]) == 0
    (rec,) = records_by_key(out).values()
    _check_video_record(rec, steps=3)
    assert rec.config.fps == 7
    assert any("synthetic" in line for line in rec.log_tail)
    assert not (out / "media").exists()  # save_media is off


def test_wan_text_to_video(tmp_path: Path, one_thread: None) -> None:
    out = tmp_path / "run"
    assert main(["run", str(_copy("tiny-wan-cpu", tmp_path)), "--headless", "--out", str(out)]) == 0
    (rec,) = records_by_key(out).values()
    _check_video_record(rec, steps=3)
    assert any("WanPipeline" in line for line in rec.log_tail)


def test_image_to_video_without_first_frames_fails_with_a_reason(tmp_path: Path, one_thread: None) -> None:
    profile = _copy("tiny-i2v-cpu", tmp_path, **{'first_frames = "synthetic"\n': ""})
    out = tmp_path / "run"
    assert main(["run", str(profile), "--headless", "--out", str(out)]) == 1
    (rec,) = records_by_key(out).values()
    assert rec.status == "failed" and "first frames" in rec.reasons[0]


def test_shipped_video_shapes_are_the_real_architectures() -> None:
    counts = {}
    for name in ("modelscope-t2v", "svd-xt", "wan2.1-t2v-1.3b"):
        shape = load_shape(name, "video pipeline")
        with torch.device("meta"):
            for part in ("unet", "transformer", "text_encoder", "image_encoder"):
                if part in shape:
                    counts[(name, part)] = sum(p.numel() for p in _model(part, shape[part]).parameters())
    assert counts[("modelscope-t2v", "unet")] == pytest.approx(1.41e9, rel=0.01)  # "1.7B" with its 0.34 B encoder
    assert counts[("modelscope-t2v", "text_encoder")] == pytest.approx(0.34e9, rel=0.01)
    assert counts[("svd-xt", "unet")] == pytest.approx(1.52e9, rel=0.01)
    assert counts[("svd-xt", "image_encoder")] == pytest.approx(0.63e9, rel=0.01)
    assert counts[("wan2.1-t2v-1.3b", "transformer")] == pytest.approx(1.42e9, rel=0.01)
    assert counts[("wan2.1-t2v-1.3b", "text_encoder")] == pytest.approx(5.68e9, rel=0.01)  # UMT5-XXL encoder


def test_phase_spans_need_all_edges_in_order() -> None:
    marks = [Mark(t_s=0.0, label="start"), Mark(t_s=1.0, label=label(0, "encode")),
             Mark(t_s=1.2, label=label(0, "denoise")), Mark(t_s=1.5, label=label(0, "step", 0)),
             Mark(t_s=1.9, label=label(0, "step", 1)), Mark(t_s=2.0, label=label(0, "decode")),
             Mark(t_s=2.3, label=label(0, "end")),
             # batch 1: no decode edge (the pipeline failed) -> left out
             Mark(t_s=3.0, label=label(1, "encode")), Mark(t_s=3.1, label=label(1, "denoise")),
             # batch 2: edges out of order -> left out
             Mark(t_s=5.0, label=label(2, "encode")), Mark(t_s=4.0, label=label(2, "denoise")),
             Mark(t_s=6.0, label=label(2, "decode")), Mark(t_s=7.0, label=label(2, "end"))]
    spans = spans_from_marks(marks)
    assert [(s.batch, s.phase, s.start_s, s.end_s) for s in spans] == [
        (0, "encode", 1.0, 1.2), (0, "denoise", 1.2, 2.0), (0, "decode", 2.0, 2.3)]
    assert spans[1].step_ends_s == [1.5, 1.9]


def test_first_frames_are_attached_to_image_to_video_requests() -> None:
    from mle_tui.core.datasets import load_requests

    p = load_profile(PROFILES / "tiny-i2v-cpu.toml")
    reqs = load_requests(p, base_dir=PROFILES)
    assert len(reqs) == 8 and all(r.images and len(r.images) == 1 for r in reqs)
    assert len({r.images[0].seed for r in reqs}) == 8 and reqs[0].images[0].path is None
    t2v = load_profile(PROFILES / "tiny-t2v-cpu.toml")
    assert all(r.images is None for r in attach_first_frames(t2v, load_requests(t2v, base_dir=PROFILES)))


BASE = """name = "v"
task = "TASK"
runtime = "diffusers"
[model]
id = "tiny-t2v"
weights = "dummy"
[dataset]
name = "partiprompts"
path = "x.tsv"
[sweep]
batch_size = [1, 4]
num_inference_steps = 3
"""


@pytest.mark.parametrize("task, extra, field", [
    ("text-to-video", "num_frames = [0, 16]\n", "sweep.num_frames"),
    ("text-to-video", "num_frames = -4\n", "sweep.num_frames"),
    ("text-to-video", "fps = 0\n", "sweep.fps"),
    ("text-to-image", "num_frames = 16\n", "sweep.num_frames"),
    ("text-to-image", "fps = 7\n", "sweep.fps"),
    ("text-to-video", "max_num_seqs = 8\n", "sweep.max_num_seqs"),
    ("text-to-video", "num_frames = 20000\n", "sweep.num_frames"),
])
def test_profile_validation_names_file_and_field(task: str, extra: str, field: str) -> None:
    with pytest.raises(InputError) as info:
        decode_profile(BASE.replace("TASK", task) + extra, "bad.toml")
    line = info.value.line()
    assert line.startswith(f"bad.toml: {field}: ") and "\n" not in line


def test_first_frames_only_for_image_to_video() -> None:
    text = BASE.replace("TASK", "text-to-video").replace('path = "x.tsv"\n', 'path = "x.tsv"\nfirst_frames = "synthetic"\n')
    with pytest.raises(InputError) as info:
        decode_profile(text, "bad.toml")
    assert info.value.line().startswith("bad.toml: dataset.first_frames: applies to image-to-video only")


def test_video_axes_expand_and_name_configurations() -> None:
    p = decode_profile(BASE.replace("TASK", "image-to-video").replace("num_inference_steps = 3\n",
                       'num_inference_steps = 3\nnum_frames = [14, 25]\nfps = 7\nresolution = "1024x576"\n'
                       'power_limit_w = [400, 700]\n'), "ok.toml")
    keys = [c.key() for c in p.configs()]
    assert keys[:3] == ["bs1-steps3-1024x576-f14-fps7-tp1-pl400", "bs1-steps3-1024x576-f14-fps7-tp1-pl700",
                        "bs1-steps3-1024x576-f25-fps7-tp1-pl400"]
    assert len(keys) == 8 and p.configs()[0].label() == "B=1 steps=3 1024x576 14 frames 7 fps 400 W"
    assert p.latency_metric() == "batch_latency"


def test_shipped_video_profiles_are_listed_and_valid() -> None:
    infos = {i.name: i for i in list_profiles()}
    for name, task in (("tiny-t2v-cpu", "text-to-video"), ("tiny-i2v-cpu", "image-to-video"),
                       ("tiny-wan-cpu", "text-to-video")):
        assert infos[name].error is None and infos[name].task == task
    assert {"text-to-video", "image-to-video"} <= {i.task for i in infos.values() if i.error is None}
    for path in sorted((PROFILES / "gpu").glob("*-h200.toml")):
        load_profile(path)  # the lead's GPU profiles validate


def test_text_to_image_gets_phases_and_saves_images(tmp_path: Path, one_thread: None) -> None:
    text = (PROFILES / "tiny-diffusion-cpu.toml").read_text().replace(
        'path = "../tests/assets/partiprompts-sample.tsv"', f'path = "{TSV}"').replace(
        "batch_size = [1, 2]", "batch_size = [2]") + "\n[output]\nsave_media = true\n"
    profile = tmp_path / "t2i.toml"
    profile.write_text(text)
    out = tmp_path / "run"
    assert main(["run", str(profile), "--headless", "--out", str(out)]) == 0
    (rec,) = records_by_key(out).values()
    assert rec.status == "ok" and rec.energy_per_image_j > 0 and rec.energy_per_video_j is None
    assert [p.phase for p in rec.phases] == ["encode", "denoise", "decode"] * 3
    assert all(len(p.step_ends_s) == 4 for p in rec.phases if p.phase == "denoise")
    pngs = sorted((out / "media" / rec.config_key).glob("*.png"))
    assert len(pngs) == 2 * 2  # 2 measured batches of 2 images, warm-up not saved


def test_demo_video_on_the_simulator_has_phases(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", str(PROFILES / "demo-video.toml"), "--headless", "--out", str(out)]) == 0
    recs = records_by_key(out)
    assert len(recs) == 6
    for rec in recs.values():
        # (ok, or invalid only by main's gpus_active gate, which the simulated diffusion runner can
        # trip on short batches: not what this test is about)
        assert rec.status == "ok" or all("stayed idle" in r for r in rec.reasons), rec.reasons
        assert rec.simulated and rec.energy_per_video_j > 0
        assert [p.phase for p in rec.phases] == ["encode", "denoise", "decode"] * 5
        assert all(len(p.step_ends_s) == 25 for p in rec.phases if p.phase == "denoise")


def test_cli_rejects_bad_frames_with_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    bad = _copy("tiny-t2v-cpu", tmp_path, **{"num_frames = [4]": "num_frames = [0]"})
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", "run", str(bad), "--headless", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"mle-tui: {bad}: sweep.num_frames: values must be positive integers"]
    assert not (tmp_path / "out").exists()


def test_wan_refuses_frames_it_would_round(tmp_path: Path, one_thread: None) -> None:
    profile = _copy("tiny-wan-cpu", tmp_path, **{"num_frames = [5]": "num_frames = [6]"})
    out = tmp_path / "run"
    assert main(["run", str(profile), "--headless", "--out", str(out)]) == 1
    (rec,) = records_by_key(out).values()
    assert rec.status == "failed" and rec.reasons == ["WanPipeline needs num_frames = 4k + 1 (got 6)"]
