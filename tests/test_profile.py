"""Profiles: the shipped ones validate and expand; bad ones give one line naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from mle_tui.core.errors import InputError
from mle_tui.core.profile import decode_profile, load_profile, parse_duration_s
from mle_tui.core.shipped import find_profile, list_profiles, profiles_dir
from mle_tui.core.sweep import SweepSyntaxError, parse_axis

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted((REPO / "profiles").glob("*.toml"))
DEMO = (REPO / "profiles" / "demo.toml").read_text()

GOOD = """
name = "mini"
task = "chat"
runtime = "vllm"
[model]
id = "org/model"
[dataset]
name = "sharegpt"
[sweep]
max_num_seqs = "8..64 x2"
tensor_parallel = [1, 2]
power_limit_w = "300..500 +100"
"""


def test_shipped_profiles_dir_is_the_repo_folder():
    assert profiles_dir() == REPO / "profiles"
    names = {p.stem for p in SHIPPED}
    assert {"demo", "demo-diffusion", "llama3.1-8b-chat", "code-humaneval", "sd2.1-partiprompts"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_profile_validates_and_expands(path):
    profile = load_profile(path)
    configs = profile.configs()
    assert configs, "a profile must expand to at least one configuration"
    keys = [c.key() for c in configs]
    assert len(set(keys)) == len(keys)
    assert profile.description
    assert profile.target.value_s() is not None
    if profile.is_llm:
        assert all(c.max_num_seqs for c in configs)
    else:
        assert all(c.batch_size and c.num_inference_steps for c in configs)


GPU_PROFILES = sorted((REPO / "profiles" / "gpu").glob("*.toml"))


@pytest.mark.parametrize("path", GPU_PROFILES, ids=[p.stem for p in GPU_PROFILES])
def test_every_gpu_profile_validates_and_its_server_flags_pass(path):
    """The GPU-node profiles (run by hand on leased GPUs) load, expand, and set no flag mle-tui
    owns through server.extra_args (e.g. --stream-interval, which server.stream_interval sets)."""
    from mle_tui.core.runtimes.vllm_server import check_server_args

    profile = load_profile(path)
    keys = [c.key() for c in profile.configs()]
    assert keys and len(set(keys)) == len(keys)
    if profile.runtime == "vllm":
        check_server_args(profile, str(path))


def test_paper_defaults():
    llama = load_profile(REPO / "profiles" / "llama3.1-8b-chat.toml")
    assert (llama.runtime, llama.task, llama.dataset.name) == ("vllm", "chat", "sharegpt")
    assert [c.max_num_seqs for c in llama.configs()] == [8, 16, 32, 64, 128, 256]
    assert llama.latency_metric() == "tpot" and llama.target.value_s() == pytest.approx(0.1)
    code = load_profile(REPO / "profiles" / "code-humaneval.toml")
    assert (code.dataset.name, code.latency_metric()) == ("humaneval", "e2e")
    sd = load_profile(REPO / "profiles" / "sd2.1-partiprompts.toml")
    assert (sd.runtime, sd.model.id, sd.dataset.name) == ("diffusers", "stabilityai/stable-diffusion-2-1", "partiprompts")
    assert [c.batch_size for c in sd.configs()] == [1, 2, 4, 8, 16, 32, 64]
    assert sd.target.value_s() == 5.0 and sd.latency_metric() == "batch_latency"


def test_demo_runs_on_the_simulated_backend():
    demo = load_profile(REPO / "profiles" / "demo.toml")
    assert demo.runtime == "sim" and demo.gpu.simulated and demo.dataset.name == "synthetic"
    configs = demo.configs()
    assert sorted({c.max_num_seqs for c in configs}) == [8, 16, 32, 64, 128]
    assert sorted({c.power_limit_w for c in configs}) == [400, 700]
    # N >> B: at least 8 requests per slot of the largest batch.
    assert demo.dataset.num_requests * demo.dataset.repeats >= 8 * 128
    diff = load_profile(REPO / "profiles" / "demo-diffusion.toml")
    assert diff.runtime == "sim" and diff.task == "text-to-image" and diff.gpu.simulated


def test_list_and_find_profiles():
    infos = {i.name: i for i in list_profiles()}
    assert infos["demo"].runtime == "sim" and infos["demo"].error is None
    assert find_profile("demo") == REPO / "profiles" / "demo.toml"
    assert find_profile("demo.toml") == REPO / "profiles" / "demo.toml"
    assert find_profile("no-such-profile") is None


def test_list_profiles_reports_invalid_file(tmp_path):
    (tmp_path / "ok.toml").write_text(GOOD)
    (tmp_path / "bad.toml").write_text(GOOD.replace('task = "chat"', 'task = "poetry"'))
    infos = {Path(i.path).stem: i for i in list_profiles(tmp_path)}
    assert infos["ok"].error is None and infos["ok"].name == "mini"
    assert infos["bad"].error is not None and "task" in infos["bad"].error


def test_good_profile_expands_cartesian_product():
    p = decode_profile(GOOD, "mini.toml")
    configs = p.configs()
    assert len(configs) == 4 * 2 * 3
    assert configs[0].key() == "mns8-tp1-pl300"
    assert p.dataset.num_requests == 512  # default


def _error(text: str, source: str = "p.toml") -> InputError:
    with pytest.raises(InputError) as exc:
        decode_profile(text, source)
    line = exc.value.line()
    assert "\n" not in line and line.startswith(f"{source}: ")
    return exc.value


@pytest.mark.parametrize(
    "old, new, field, words",
    [
        ("num_requests = 256", 'num_requests = "many"', "dataset.num_requests", "Expected int"),
        ("num_requests = 256", "num_requests = 0", "dataset.num_requests", ">= 1"),
        ('weights = "dummy"', 'weights = "dummy"\nflavour = 1', "model.flavour", "unknown field"),
        ('name = "demo"', 'name = "demo"\nbogus = 1', "bogus", "unknown field"),
        ('"8..128 x2"', '"128..8 x2"', "sweep.max_num_seqs", "below its start"),
        ('"8..128 x2"', '"8..128 x1"', "sweep.max_num_seqs", "greater than 1"),
        ('"8..128 x2"', '"eight"', "sweep.max_num_seqs", "cannot parse"),
        ("[400, 700]", "[0, 700]", "sweep.power_limit_w", "positive integers"),
        ('runtime = "sim"', 'runtime = "tgi"', "runtime", "Invalid enum value 'tgi'"),
        ('runtime = "sim"', 'runtime = "diffusers"', "runtime", "cannot serve task"),
        ('value = "100ms"', 'value = "fast"', "target.value", "cannot parse duration"),
        ('task = "chat"\n', "", "(top level)", "missing required field task"),
        ('[sweep]\nmax_num_seqs = "8..128 x2"', "[sweep]", "sweep.max_num_seqs", "required"),
        # the inter-token gap read between chunks of up to 8 tokens is no latency target
        ('metric = "tpot"\nvalue = "100ms"', 'metric = "itl"\nvalue = "100ms"\n[server]\nstream_interval = 8',
         "target.metric",
         "a chunk carries up to 8 tokens; use tpot"),
    ],
)
def test_bad_profile_one_line_names_field(old, new, field, words):
    assert old in DEMO
    err = _error(DEMO.replace(old, new, 1))
    assert err.field == field
    assert words in err.problem


def test_toml_syntax_error_names_line():
    err = _error(DEMO.replace('name = "demo"', 'name = "demo'))
    assert err.field == "(syntax)"
    assert "line 4" in err.problem


def test_missing_profile_file(tmp_path):
    with pytest.raises(InputError) as exc:
        load_profile(tmp_path / "nope.toml")
    assert exc.value.line() == f"{tmp_path / 'nope.toml'}: no such profile file"


def test_load_profile_reports_path_as_source(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(GOOD.replace('"8..64 x2"', '"8..64 x0"'))
    with pytest.raises(InputError) as exc:
        load_profile(f)
    assert exc.value.source == str(f) and exc.value.field == "sweep.max_num_seqs"


@pytest.mark.parametrize(
    "value, expected",
    [
        (8, [8]),
        ([32, 8, 16, 8], [8, 16, 32]),
        ("8, 16, 32", [8, 16, 32]),
        ("8..256 x2", [8, 16, 32, 64, 128, 256]),
        ("8..100 x2", [8, 16, 32, 64]),
        ("200..700 +100", [200, 300, 400, 500, 600, 700]),
        ("1..4", [1, 2, 3, 4]),
        ("5..5", [5]),
    ],
)
def test_sweep_syntax(value, expected):
    assert parse_axis(value) == expected


@pytest.mark.parametrize("value", ["", "8..", "a..b", "4..1", "1..8 x1", "0..8 x2", "1..8 +0", [], True])
def test_sweep_syntax_errors(value):
    with pytest.raises(SweepSyntaxError):
        parse_axis(value)


def test_durations():
    assert parse_duration_s("100ms") == pytest.approx(0.1)
    assert parse_duration_s("5s") == 5.0 and parse_duration_s("2min") == 120.0 and parse_duration_s(0.25) == 0.25
    for bad in ("0ms", "soon", -1):
        with pytest.raises(ValueError):
            parse_duration_s(bad)


@pytest.mark.parametrize(("extra", "field", "problem"), [
    ("bogus = 1", "dataset.bogus", "unknown field"),
    ("min_prompt_tokens = 900\nmax_prompt_tokens = 10", "dataset.min_prompt_tokens", "is above max_prompt_tokens"),
])
def test_nested_errors_name_the_whole_field_path(extra: str, field: str, problem: str) -> None:
    text = f"""name = "x"
task = "chat"
runtime = "sim"
[model]
id = "m"
[dataset]
name = "synthetic"
{extra}
[sweep]
max_num_seqs = 8
"""
    with pytest.raises(InputError) as err:
        decode_profile(text, "p.toml")
    assert err.value.line() == f"p.toml: {field}: {problem}"
