"""Visual chat (VLM): profile and sweep axis, datasets, image-token counting, the dummy model
directories (tokenizer with real special ids, processors) and the vLLM path end to end against
the fake server, which counts image tokens as vLLM does."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import msgspec
import pytest

from mle_tui.core.dataset_types import ImageRef, Request
from mle_tui.core.datasets import load_requests
from mle_tui.core.errors import InputError
from mle_tui.core.image_tokens import image_token_count, smart_resize
from mle_tui.core.profile import decode_profile

FAKE = [sys.executable, str(Path(__file__).parent / "fake_vllm_server.py")]
PARTI = Path(__file__).parent / "assets" / "partiprompts-sample.tsv"
SHAPES = Path(__file__).resolve().parents[1] / "core" / "data" / "models"


def _profile(dataset: str = 'name = "synthetic-images"\nnum_requests = 8', sweep: str = "max_num_seqs = 4",
             task: str = "visual-chat", runtime: str = "vllm", model: str = "qwen2.5-vl-7b", extra: str = ""):
    return decode_profile(f"""
name = "vlm"
task = "{task}"
runtime = "{runtime}"
[model]
id = "{model}"
weights = "dummy"
[dataset]
{dataset}
[sweep]
{sweep}
{extra}
""", "vlm.toml")


@pytest.fixture(autouse=True)
def _model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MLE_TUI_MODEL_CACHE", str(tmp_path_factory.getbasetemp() / "models"))


# --------------------------------------------------------------------------- profile


def test_image_size_is_a_sweep_axis_with_its_own_key_part() -> None:
    p = _profile(sweep='max_num_seqs = [4, 8]\nimage_size = ["336x336", "1280x720"]\npower_limit_w = [400, 700]')
    keys = [c.key() for c in p.configs()]
    assert len(keys) == 8 == len(set(keys))
    assert keys[0] == "mns4-tp1-pl400-img336x336" and keys[-1] == "mns8-tp1-pl700-img1280x720"
    assert p.is_llm and p.latency_metric() == "tpot"
    # a chat profile's keys are unchanged (the field is omitted when None)
    chat = decode_profile('name="c"\ntask="chat"\nruntime="sim"\n[model]\nid="m"\n[dataset]\nname="synthetic"\n'
                          '[sweep]\nmax_num_seqs=8\npower_limit_w=300')
    assert chat.configs()[0].key() == "mns8-tp1-pl300" and "image_size" not in msgspec.json.encode(chat.configs()[0]).decode()


@pytest.mark.parametrize("kw, field", [
    (dict(task="chat"), "sweep.image_size"),
    (dict(sweep='max_num_seqs = 4\nimage_size = "336"'), "sweep.image_size"),
    (dict(dataset='name = "sharegpt"'), "dataset.name"),
    (dict(task="chat", sweep="max_num_seqs = 4"), "dataset.name"),
    (dict(runtime="sim"), "runtime"),
    (dict(dataset='name = "jsonl"\npath = "x.jsonl"\nimages_per_request = 2'), "dataset.images_per_request"),
])
def test_bad_visual_profiles_name_the_field(kw: dict, field: str) -> None:
    if kw.get("task") == "chat" and "sweep" not in kw:
        kw["sweep"] = 'max_num_seqs = 4\nimage_size = "336x336"'
        kw["dataset"] = 'name = "sharegpt"'
    with pytest.raises(InputError) as err:
        _profile(**kw)
    assert err.value.source == "vlm.toml" and err.value.field == field, err.value.line()


# --------------------------------------------------------------------------- datasets


def test_synthetic_images_seeded_with_sharegpt_prompts() -> None:
    p = _profile(dataset='name = "synthetic-images"\nnum_requests = 6\nrepeats = 2\nimages_per_request = 2\nseed = 3')
    a, b = load_requests(p), load_requests(p)
    assert a == b and len(a) == 12 and [r.id for r in a] == list(range(12))
    for r in a:
        assert r.prompt and r.output_tokens > 0 and r.input_tokens > 0
        assert len(r.images) == 2 and all(im.seed is not None and im.path is None for im in r.images)
    assert a[7].images == a[1].images and a[1].images != a[2].images  # repeats share their images
    assert len({(im.width, im.height) for r in a for im in r.images}) > 1  # several sizes drawn
    other = load_requests(msgspec.structs.replace(p, dataset=msgspec.structs.replace(p.dataset, seed=4)))
    assert [r.images for r in other] != [r.images for r in a]


def test_synthetic_images_with_partiprompts_text() -> None:
    p = _profile(dataset=f'name = "synthetic-images"\nnum_requests = 5\npath = "{PARTI}"\nmax_output_tokens = 64')
    reqs = load_requests(p)
    texts = {line.split("\t")[0] for line in PARTI.read_text().splitlines()[1:]}
    assert len(reqs) == 5 and all(r.prompt in texts and r.output_tokens == 64 and r.images for r in reqs)


def _jpeg(path: Path, size: tuple[int, int]) -> None:
    from PIL import Image

    Image.new("RGB", size, (10, 200, 30)).save(path, format="JPEG")


def test_jsonl_with_image_paths(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    _jpeg(tmp_path / "img" / "a.jpg", (640, 480))
    _jpeg(tmp_path / "b.jpg", (300, 200))
    rows = [{"prompt": "What is in the picture?", "images": ["img/a.jpg"], "output_tokens": 32},
            {"prompt": "Compare them.", "images": ["img/a.jpg", str(tmp_path / "b.jpg")], "output_len": 7},
            {"prompt": "No length.", "images": ["b.jpg"]}]
    f = tmp_path / "vqa.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    p = _profile(dataset=f'name = "jsonl"\npath = "{f}"\nnum_requests = 3\nmax_output_tokens = 99')
    reqs = load_requests(p)
    assert [r.output_tokens for r in reqs] == [32, 7, 99]
    assert reqs[0].images == [ImageRef(width=640, height=480, path=str(tmp_path / "img" / "a.jpg"))]
    assert [im.width for im in reqs[1].images] == [640, 300]


@pytest.mark.parametrize("row, where, problem", [
    ({"prompt": "x", "images": ["missing.jpg"]}, "line 2: images[0]", "no such image file"),
    ({"prompt": "x", "images": []}, "line 2: images", "non-empty list"),
    ({"prompt": "", "images": ["a.jpg"]}, "line 2: prompt", "non-empty string"),
    ({"prompt": "x", "images": ["a.jpg"], "output_tokens": 0}, "line 2: output_tokens", "at least 1"),
    ({"prompt": "x", "images": ["not-an-image.jpg"]}, "line 2: images[0]", "not a readable image"),
])
def test_bad_jsonl_rows_name_file_line_and_field(tmp_path: Path, row: dict, where: str, problem: str) -> None:
    _jpeg(tmp_path / "a.jpg", (64, 64))
    (tmp_path / "not-an-image.jpg").write_text("hello")
    f = tmp_path / "bad.jsonl"
    f.write_text(json.dumps({"prompt": "ok", "images": ["a.jpg"]}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError) as err:
        load_requests(_profile(dataset=f'name = "jsonl"\npath = "{f}"\nnum_requests = 2'))
    assert err.value.source == str(f) and err.value.field == where and problem in err.value.problem


# --------------------------------------------------------------------------- image tokens


def test_image_token_counts_per_family() -> None:
    llava = json.loads((SHAPES / "llava-1.5-7b.json").read_text())
    qwen = json.loads((SHAPES / "qwen2.5-vl-7b.json").read_text())
    assert {image_token_count(llava, w, h) for w, h in [(336, 336), (1280, 720), (100, 900)]} == {576}
    # Qwen2.5-VL: (h'/28) x (w'/28) after the resize to multiples of 28; 1024x768 -> 27 x 37 = 999
    # (the count vLLM reported for that image on an H200, DESIGN.md)
    assert image_token_count(qwen, 336, 336) == 144
    assert image_token_count(qwen, 1024, 768) == 999
    assert image_token_count(qwen, 1280, 720) == 26 * 46
    assert smart_resize(20, 20) == (56, 56)  # raised to min_pixels
    h, w = smart_resize(8000, 8000)
    assert h * w <= 28 * 28 * 16384 and h % 28 == 0 and w % 28 == 0
    with pytest.raises(ValueError):
        image_token_count({"model_type": "llama"}, 336, 336)


# --------------------------------------------------------------------------- model directories


def test_llava_dirs_tokenizer_ids_and_processor_expand_576(tmp_path: Path) -> None:
    from PIL import Image
    from transformers import AutoProcessor, AutoTokenizer

    from mle_tui.core.model_dirs import prepare_model_dir

    d = prepare_model_dir("llava-1.5-7b", tmp_path / "llava")
    tok = AutoTokenizer.from_pretrained(d)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>", "<image>", "<pad>")}
    assert ids == {"<unk>": 0, "<s>": 1, "</s>": 2, "<image>": 32000, "<pad>": 32001}
    assert len(tok) == 32064  # every id the model can generate decodes
    text = "Explain how a transformer language model works, in two paragraphs."
    n_text = len(tok.encode(text))
    assert 10 <= n_text <= 25  # a trained BPE: English at about 4-5 characters a token
    proc = AutoProcessor.from_pretrained(d)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    prompt = proc.apply_chat_template(msgs, add_generation_prompt=True)
    assert prompt.startswith("USER: <image>\n") and prompt.endswith("ASSISTANT:")
    for size in [(336, 336), (1280, 720)]:
        out = proc(text=prompt, images=[Image.new("RGB", size)], return_tensors="pt")
        assert out["input_ids"][0].tolist().count(32000) == 576
        assert tuple(out["pixel_values"].shape) == (1, 3, 336, 336)


def test_qwen_dir_special_ids_template_and_image_grid(tmp_path: Path) -> None:
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer

    from mle_tui.core.model_dirs import QWEN_SPECIALS, prepare_model_dir

    d = prepare_model_dir("qwen2.5-vl-7b", tmp_path / "qwen")
    cfg = json.loads((d / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(d)
    real = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
            "<|vision_end|>": 151653, "<|vision_pad|>": 151654, "<|image_pad|>": 151655, "<|video_pad|>": 151656}
    assert {t: tok.convert_tokens_to_ids(t) for t in real} == real
    assert tok.convert_tokens_to_ids(QWEN_SPECIALS[-1]) == 151664 and len(tok) == cfg["vocab_size"] == 152064
    assert (cfg["image_token_id"], cfg["vision_start_token_id"]) == (151655, 151652)
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Describe."}, {"type": "image"}]}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    assert ids.count(151655) == 1 and ids[ids.index(151655) - 1] == 151652 and ids[ids.index(151655) + 1] == 151653
    assert ids[0] == 151644 and ids[-3:-1] == [151644, tok.convert_tokens_to_ids("assistant")] or ids[0] == 151644
    # The image processor (the real class, from our preprocessor_config.json) and our count agree.
    ip = AutoImageProcessor.from_pretrained(d)
    pre = json.loads((d / "preprocessor_config.json").read_text())
    for w, h in [(336, 336), (1024, 768), (1280, 720), (720, 1280), (3000, 2000)]:
        t, gh, gw = ip(images=[Image.new("RGB", (w, h))], return_tensors="pt")["image_grid_thw"][0].tolist()
        assert t * gh * gw // 4 == image_token_count(cfg, w, h, pre), (w, h)


def test_shipped_vlm_shape_is_prepared_once_on_demand() -> None:
    from mle_tui.core.model_dirs import cache_root, dummy_model_dir

    assert dummy_model_dir("llama-3.1-8b", "dummy") is None  # text shapes: config.json alone, as before
    assert dummy_model_dir("tiny-llava", "pretrained") is None
    a = dummy_model_dir("tiny-llava", "dummy")
    assert a is not None and Path(a).parent == cache_root() and (Path(a) / "tokenizer.json").is_file()
    mtime = (Path(a) / "tokenizer.json").stat().st_mtime_ns
    assert dummy_model_dir("tiny-llava", "dummy") == a and (Path(a) / "tokenizer.json").stat().st_mtime_ns == mtime


# --------------------------------------------------------------------------- vLLM path (fake server)


def _data_url_size(url: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
        return im.size


def test_payload_carries_the_images_as_jpeg_data_urls() -> None:
    from mle_tui.core.runtimes.loadgen import LoadSettings, build_payload

    req = Request(id=0, prompt="What is this?", input_tokens=4, output_tokens=8,
                  images=[ImageRef(width=640, height=480, seed=1), ImageRef(width=336, height=336, seed=2)])
    path, body = build_payload(req, LoadSettings(base_url="http://x", model="m", use_token_ids=True))
    assert path == "/v1/chat/completions" and body["max_tokens"] == 8
    (msg,) = body["messages"]
    assert msg["role"] == "user" and msg["content"][-1] == {"type": "text", "text": "What is this?"}
    urls = [p["image_url"]["url"] for p in msg["content"][:-1]]
    assert all(u.startswith("data:image/jpeg;base64,") for u in urls)
    assert [_data_url_size(u) for u in urls] == [(640, 480), (336, 336)]


@pytest.mark.parametrize("model, sizes, per_image, slack", [
    # + <|vision_start|> and <|vision_end|>, exactly
    ("qwen2.5-vl-7b", ["336x336", "1280x720"], {"336x336": 144 + 2, "1280x720": 26 * 46 + 2}, 0),
    # + "\n" after <image> and the space split off before it; BPE merges at the text's start vary
    ("llava-1.5-7b", ["1280x720"], {"1280x720": 576}, 3),
])
def test_vllm_sweep_records_image_tokens(tmp_path: Path, model: str, sizes: list[str], per_image: dict,
                                         slack: int) -> None:
    """`mle-tui run`'s path (SweepRunner + VllmRuntime) against the fake server: the shipped
    shape is prepared on demand, the requests carry data-URL images resized to each
    configuration's image_size, the server counts their tokens from the decoded pixels, and the
    record splits prompt tokens into text and image tokens; eq. 2 holds."""
    from mle_tui.core.runner import SweepRunner
    from mle_tui.core.runtimes.vllm import VllmRuntime
    from mle_tui.core.store import RunStore

    size_list = ", ".join(f'"{s}"' for s in sizes)
    prof = _profile(model=model, dataset='name = "synthetic-images"\nnum_requests = 24\nmax_output_tokens = 40\n'
                                         'max_prompt_tokens = 200',
                    sweep=f"max_num_seqs = 4\nimage_size = [{size_list}]",
                    extra='[steady_state]\nrule = "request-count"\nmin_window_s = 0.1\nmax_token_mismatch = 1.0\n[server]\nenv = { FAKE_STARTUP_S = "0.1", '
                          'FAKE_STEP_S = "0.015" }\n[gpu]\nsimulated = true')
    out = tmp_path / "run"
    summary = SweepRunner(prof, out, runtime=VllmRuntime(launcher=FAKE, metrics_period_s=0.05),
                          allow_simulated=True).run()
    assert summary.failed == 0
    records = {r.config.image_size: r for r in RunStore(out).load_records()}
    assert sorted(records) == sorted(sizes)
    for size, rec in records.items():
        assert rec.task == "visual-chat" and rec.status == "ok", rec.reasons
        assert len(rec.requests) == 24 and all(r.ok for r in rec.requests)
        for row in rec.requests:
            assert row.images == 1 and row.image_source == "synthetic"
            # exact: the server's prompt tokens minus the text-only prompt's (same chat template)
            assert per_image[size] <= row.image_tokens <= per_image[size] + slack
            assert row.input_tokens > row.image_tokens
        pt = rec.prompt_tokens
        assert pt is not None and pt.image_source == "synthetic" and pt.requests == 24 and pt.images == 24
        assert 24 * per_image[size] <= pt.image_tokens <= 24 * (per_image[size] + slack)
        assert pt.text_tokens + pt.image_tokens == sum(r.input_tokens for r in rec.requests)
        assert pt.image_share == pytest.approx(pt.image_tokens / (pt.text_tokens + pt.image_tokens))
        ss = rec.steady_state
        assert ss is not None and ss.tokens > 0
        assert rec.energy_per_request_j == pytest.approx(ss.energy_j / ss.tokens * rec.mean_output_tokens)
    if len(sizes) == 2:  # bigger images, more image tokens: a bigger share
        assert records["1280x720"].prompt_tokens.image_share > records["336x336"].prompt_tokens.image_share


def test_prepare_model_command(tmp_path: Path, capsys) -> None:
    from mle_tui.tui.cli import main

    assert main(["prepare-model", "tiny-llava", str(tmp_path / "m"), "--check"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(tmp_path / "m") and (tmp_path / "m" / "preprocessor_config.json").is_file()
    assert "1280x720: 576 image tokens (<image>), expected 576" in out
    assert main(["prepare-model", "llama-3.1-8b"]) == 2  # a text shape needs no prepared directory
    assert "not a shipped vision-language shape" in capsys.readouterr().err
