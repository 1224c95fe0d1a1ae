"""Generate the tiny Llama used by the vLLM tests and ``profiles/tiny-llama-cpu.toml``.

Writes ``config.json`` (2 layers, hidden 256, 4 heads of dim 64, vocab 2048) and a byte-level BPE
tokenizer trained on the first ShareGPT conversations (``tokenizer.json`` +
``tokenizer_config.json``). No weights: vLLM serves it with ``--load-format dummy``.

    python tests/assets/make_tiny_llama.py [OUT_DIR]   (default: tests/assets/tiny-llama)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mle_tui.core.model_dirs import training_texts

VOCAB_SIZE = 2048
SPECIAL = ["<unk>", "<s>", "</s>"]

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "vocab_size": VOCAB_SIZE,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}


def make_tokenizer(out: Path, texts: list[str]) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    assert tok.token_to_id("</s>") == 2 and tok.token_to_id("<s>") == 1
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": False,
        "model_max_length": CONFIG["max_position_embeddings"],
        "clean_up_tokenization_spaces": False,
    }, indent=2) + "\n")


def make_tiny_llama(out: Path, *, tokenizer: bool = True) -> Path:
    """Write the model directory (config only, or config + tokenizer) and return it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    if tokenizer:
        make_tokenizer(out, training_texts(3000, require_sharegpt=True))
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "tiny-llama"
    print(make_tiny_llama(target))
