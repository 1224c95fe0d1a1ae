"""Every dummy-weight builder puts all of a model's tensors on the run's device, including those a
constructor makes outside ``torch.device(...)`` (diffusers' AlphaBlender ``mix_factor``, made with
the legacy ``torch.Tensor`` constructor, stayed on the CPU and failed SVD-XT's first batch on the
H200). Checked on the meta device, which a stray CPU tensor cannot be on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from mle_tui.core import dummy_init  # noqa: E402
from mle_tui.core.runtimes import video_pipelines  # noqa: E402

MODELS = Path(video_pipelines.__file__).resolve().parents[1] / "data" / "models"


@pytest.mark.parametrize("model_id", ["tiny-svd", "tiny-t2v", "tiny-wan"])
def test_video_pipeline_tensors_all_on_the_device(model_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video_pipelines, "init_dummy_", lambda module, seed: module)  # meta holds no values
    shape = json.loads((MODELS / f"{model_id}.json").read_text())
    pipe = video_pipelines.build_video_pipeline(shape, "meta", torch.float32, 0)
    for part in video_pipelines.MODEL_PARTS:
        module = getattr(pipe, part, None)
        if module is None:
            continue
        stray = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.device.type != "meta"]
        assert stray == [], f"{model_id}.{part}: {stray[:3]}"


def test_place_moves_a_stray_tensor_and_names_one_it_cannot() -> None:
    with torch.device("meta"):
        m = torch.nn.Linear(2, 2)
    m.register_parameter("stray", torch.nn.Parameter(torch.Tensor([0.5])))  # CPU, as AlphaBlender does
    assert m.stray.device.type == "cpu"
    dummy_init.place_(m, "meta")
    assert {t.device.type for t in m.parameters()} == {"meta"}


def test_attention_over_the_grid_limit_runs_in_batch_slices_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.models.attention_processor import Attention

    attn = Attention(query_dim=8, heads=2, dim_head=4).eval()
    video_pipelines.split_large_attention_batches(type("M", (), {
        "attn_processors": property(lambda self: {"a": attn.processor}),
        "set_attn_processor": lambda self, d: attn.set_processor(d["a"]),
    })())
    assert isinstance(attn.processor, video_pipelines.BatchSplitAttention)
    # diffusers passes only the keyword arguments the processor names: the wrapper names the inner's
    import inspect

    assert "temb" in inspect.signature(attn.processor.__call__).parameters
    x = torch.randn(7, 5, 8)
    whole = attn(x)
    calls: list[int] = []
    inner = attn.processor.inner

    def counting(a, h, *args, **kw):  # noqa: ANN001, ANN202
        calls.append(h.shape[0])
        return inner(a, h, *args, **kw)

    attn.processor.inner = counting
    monkeypatch.setattr(video_pipelines, "GRID_YZ_MAX", 6)  # heads 2 -> at most 3 sequences a call
    torch.testing.assert_close(attn(x), whole)
    assert calls == [3, 3, 1]


def test_split_attention_joins_tuple_outputs_of_joint_processors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Joint-attention processors (CogVideoX, SD3) return (hidden, encoder hidden): both halves
    are joined over the slices."""
    def joint(attn, h, enc=None, mask=None, *args, **kwargs):  # noqa: ANN001, ANN202
        return h * 2, enc + 1

    class Attn:
        heads = 1

    wrapped = video_pipelines.BatchSplitAttention.wrap(type("P", (), {"__call__": staticmethod(joint)})())
    monkeypatch.setattr(video_pipelines, "GRID_YZ_MAX", 2)
    h, enc = torch.arange(5.0).reshape(5, 1), torch.zeros(5, 1)
    out_h, out_enc = wrapped(Attn(), h, enc)
    torch.testing.assert_close(out_h, h * 2)
    torch.testing.assert_close(out_enc, enc + 1)
