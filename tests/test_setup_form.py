"""The setup form's task-specific fields (UI-free: tui/form.py)."""

from __future__ import annotations


def test_setup_form_task_fields() -> None:
    """The setup form shows the frames axis for video tasks and the image size for visual chat,
    and writes them into the sweep."""
    from mle_tui.core.shipped import profiles_dir
    from mle_tui.core.profile import load_profile
    from mle_tui.tui.form import build_profile, field_values, task_fields

    t2v = load_profile(profiles_dir() / "tiny-t2v-cpu.toml")
    assert "num_frames" in task_fields(t2v) and "image_size" not in task_fields(t2v)
    res = build_profile(t2v, {"num_frames": "4, 8"})
    assert res.ok, res.errors
    assert sorted({c.num_frames for c in res.profile.configs()}) == [4, 8]
    assert "num_frames" in build_profile(t2v, {"num_frames": "0"}).errors
    vlm = load_profile(profiles_dir() / "tiny-vlm-cpu.toml")
    assert "image_size" in task_fields(vlm) and "num_frames" not in task_fields(vlm)
    res = build_profile(vlm, {"image_size": "336x336, 448x448"})
    assert res.ok, res.errors and res.profile.sweep.image_sizes() == ["336x336", "448x448"]
    assert field_values(res.profile)["image_size"] == "336x336, 448x448"
