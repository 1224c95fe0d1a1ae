"""Setup screen: pick a profile, edit the sweep with validation as you type, see the GPUs."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, OptionList, Select, SelectionList, Static
from textual.widgets.option_list import Option

from ..core.errors import InputError
from ..core.profile import Profile, load_profile
from .form import (
    DATASETS, FIELDS, LLM_FIELDS, RUNTIMES, TASK_FIELDS, build_profile, estimate_s, field_values, parse_indices,
    task_fields,
)
from .gpus import GpuProbe
from .live import fmt_duration

TEXT_FIELDS = ("model", "num_requests", "max_num_seqs", "batch_size", "num_inference_steps", "resolution",
               "num_frames", "image_size", "tensor_parallel", "power_limit_w", "gpu_indices", "target")
HINTS = {
    "max_num_seqs": "8..256 x2",
    "batch_size": "1..8 x2",
    "num_inference_steps": "25, 50",
    "resolution": "768x768",
    "num_frames": "empty = the model's; 16, 25",
    "image_size": "empty = as drawn; 336x336, 1280x720",
    "tensor_parallel": "1",
    "power_limit_w": "empty = untouched; 300..700 +100",
    "target": "100ms, 5s",
    "gpu_indices": "empty = every GPU; e.g. 0,1",
    "num_requests": "512",
    "model": "HF id or local dir",
}


class SetupScreen(Screen):
    BINDINGS = [
        Binding("ctrl+r", "start", "Start", priority=True),
        Binding("ctrl+o", "app.records", "Records"),
        Binding("f1", "app.help", "Keys"),
    ]

    def __init__(self, profiles: list[Path], initial: str | None = None) -> None:
        super().__init__()
        self.profiles = profiles
        self.initial = initial
        self.base: Profile | None = None
        self.base_path: str | None = None
        self.probe: GpuProbe | None = None
        self.result = None
        self._loading = False
        self._picking = False

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("mle-tui · setup", id="setup-title", classes="titlebar")
        with Horizontal(id="setup-main"):
            with Vertical(id="profiles-pane"):
                yield Label("Profiles", classes="pane-title")
                yield OptionList(*[Option(p.stem, id=str(p)) for p in self.profiles], id="profiles")
                yield Input(placeholder="profile file…", id="profile-file", compact=True)
                yield Static("", id="profile-error", classes="error")
            with VerticalScroll(id="form"):
                yield Static("", id="profile-desc")
                yield from self._row("model")
                with Horizontal(classes="row"):
                    yield Label("Runtime", classes="field-label")
                    yield Select([(r, r) for r in RUNTIMES], allow_blank=False, id="runtime", compact=True)
                with Horizontal(classes="row"):
                    yield Label("Dataset", classes="field-label")
                    yield Select([(d, d) for d in DATASETS], allow_blank=False, id="dataset", compact=True)
                yield from self._row("num_requests")
                for fid in ("max_num_seqs", "batch_size", "num_inference_steps", "resolution", "num_frames",
                            "image_size", "tensor_parallel", "power_limit_w", "gpu_indices", "target"):
                    yield from self._row(fid)
                yield Static("", id="summary")
                yield Static("GPUs: detecting…", id="gpu-info")
                yield SelectionList[int](id="gpu-pick", compact=True)
                yield Checkbox("Simulated backend (SIMULATED GPU)", id="simulated", compact=True)
                yield Static("", id="form-error", classes="error")
                yield Button("Start sweep (ctrl+r)", id="start", variant="success", disabled=True, compact=True)
        yield Footer()

    def _row(self, fid: str) -> ComposeResult:
        label = FIELDS[fid][1]
        with Horizontal(classes="row", id=f"row-{fid}"):
            yield Label(label, classes="field-label")
            yield Input(placeholder=HINTS.get(fid, ""), id=fid, compact=True)
        yield Static("", id=f"err-{fid}", classes="error field-error")

    def on_mount(self) -> None:
        for inp in self.query(Input):
            inp.cursor_blink = self.app.cursor_blink_enabled
        self.query_one("#simulated", Checkbox).display = False
        self.query_one("#gpu-pick", SelectionList).display = False
        self.detect_gpus()
        target = self.initial or (str(self.profiles[0]) if self.profiles else None)
        if target:
            self.load(target)
            ol = self.query_one("#profiles", OptionList)
            for i, p in enumerate(self.profiles):
                if str(p) == target:
                    ol.highlighted = i
        self.query_one("#profiles", OptionList).focus()

    # -- GPUs -----------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="gpu-probe")
    def detect_gpus(self) -> None:
        probe = self.app.gpu_probe()
        self.app.call_from_thread(self._gpus_detected, probe)

    def _gpus_detected(self, probe: GpuProbe) -> None:
        self.probe = probe
        self.app.gpu_info = probe
        self._show_gpus()
        self._fill_picker()
        self.revalidate()

    def _fill_picker(self) -> None:
        """One entry per detected GPU, ticked where the sweep may use it (the GPUs field;
        empty = every GPU). Ticking writes the GPUs field, which stays the source of truth."""
        pick = self.query_one("#gpu-pick", SelectionList)
        gpus = self.probe.gpus if self.probe is not None else []
        pick.display = bool(gpus)
        if not gpus:
            return
        chosen = set(parse_indices(self.query_one("#gpu_indices", Input).value)[0])
        self._picking = True
        pick.clear_options()
        for g in gpus:
            limit = f" · {g.power_limit_w:.0f} W" if g.power_limit_w else ""
            pick.add_option((f"GPU {g.index} · {g.name}{limit}", g.index, not chosen or g.index in chosen))
        self._picking = False

    @on(SelectionList.SelectedChanged, "#gpu-pick")
    def _picked(self, event: SelectionList.SelectedChanged) -> None:
        if self._picking or self.probe is None:
            return
        chosen = sorted(event.selection_list.selected)
        every = chosen == sorted(g.index for g in self.probe.gpus)
        self.query_one("#gpu_indices", Input).value = "" if every else ",".join(map(str, chosen))

    def _show_gpus(self) -> None:
        info = self.query_one("#gpu-info", Static)
        box = self.query_one("#simulated", Checkbox)
        profile_sim = self.base is not None and (self.base.runtime == "sim" or self.base.gpu.simulated)
        if self.probe is None:
            info.update("GPUs: detecting…")
            return
        if self.probe.gpus:
            text = f"GPUs: {self.probe.summary()}"
            box.display = False
            info.set_class(False, "warning")
        else:
            text = f"GPUs: {self.probe.summary()}"
            info.set_class(not profile_sim, "warning")
            box.display = not profile_sim
            if not profile_sim:
                text += (" The simulated backend (SIMULATED: a test double and demo, never a "
                         "measurement) can run the sweep instead:")
        if profile_sim:
            text += "\nBackend: [reverse] SIMULATED [/reverse] (set by the profile)"
        info.update(text)

    # -- profile ----------------------------------------------------------------------------
    @on(OptionList.OptionSelected, "#profiles")
    def _pick(self, event: OptionList.OptionSelected) -> None:
        self.load(event.option.id)

    @on(Input.Submitted, "#profile-file")
    def _file(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.load(event.value.strip())

    def load(self, path: str) -> None:
        err = self.query_one("#profile-error", Static)
        try:
            profile = load_profile(path)
        except InputError as exc:
            err.update(exc.line())
            return
        err.update("")
        self.base, self.base_path = profile, path
        self._loading = True
        values = field_values(profile)
        for fid in TEXT_FIELDS:
            self.query_one(f"#{fid}", Input).value = values[fid]
        self.query_one("#runtime", Select).value = profile.runtime
        self.query_one("#dataset", Select).value = profile.dataset.name
        self._loading = False
        shown = task_fields(profile)
        for fid in TASK_FIELDS:
            self.query_one(f"#row-{fid}").display = fid in shown
        desc = f"[b]{profile.name}[/b] · {profile.task} · metric {profile.latency_metric()}"
        if profile.description:
            desc += f"\n{profile.description}"
        self.query_one("#profile-desc", Static).update(desc)
        self.query_one("#setup-title", Static).update(f"mle-tui · setup · {Path(path).name}")
        self._show_gpus()
        self._fill_picker()
        self.revalidate()

    # -- validation -----------------------------------------------------------------------
    @on(Input.Changed)
    @on(Select.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event) -> None:
        if getattr(event, "input", None) is not None and event.input.id == "profile-file":
            return
        if not self._loading:
            self.revalidate()

    def values(self) -> dict[str, str]:
        out = {fid: self.query_one(f"#{fid}", Input).value for fid in TEXT_FIELDS}
        out["runtime"] = str(self.query_one("#runtime", Select).value)
        out["dataset"] = str(self.query_one("#dataset", Select).value)
        shown = task_fields(self.base) if self.base else LLM_FIELDS
        for fid in TASK_FIELDS:
            if fid not in shown:
                out.pop(fid, None)
        return out

    def simulated_selected(self) -> bool:
        box = self.query_one("#simulated", Checkbox)
        return bool(box.display and box.value)

    def revalidate(self) -> None:
        if self.base is None:
            return
        res = build_profile(self.base, self.values(), simulated=self.simulated_selected(),
                            gpus=self.probe.gpus if self.probe else None, source=self.base_path or "<form>")
        self.result = res
        for fid in TEXT_FIELDS:
            problem = res.errors.get(fid)
            self.query_one(f"#{fid}", Input).set_class(bool(problem), "-invalid")
            err = self.query_one(f"#err-{fid}", Static)
            err.update(f"↑ {problem}" if problem else "")
            err.display = bool(problem)
        other = [f"{FIELDS[k][1] if k in FIELDS else k}: {v}" for k, v in res.errors.items()
                 if k not in TEXT_FIELDS]
        need_backend = self._needs_backend(res.profile)
        if need_backend:
            other.append("No GPU detected: tick the simulated backend or use a GPU node.")
        form_err = self.query_one("#form-error", Static)
        form_err.update("\n".join(other))
        form_err.display = bool(other)
        summary = self.query_one("#summary", Static)
        if res.profile is not None:
            est, how = estimate_s(res.profile)
            sim = res.profile.runtime == "sim" or res.profile.gpu.simulated or self.simulated_selected()
            text = (f"[b]{res.num_configs}[/b] configuration{'s' * (res.num_configs != 1)} · "
                    f"estimated {fmt_duration(est) if est is not None else '—'} ({how})")
            if sim:
                text += " · [reverse] SIMULATED [/reverse]"
            summary.update(text)
        else:
            summary.update("fix the marked fields to see the sweep size")
        ok = res.ok and not need_backend
        self.query_one("#start", Button).disabled = not ok

    def _needs_backend(self, profile: Profile | None) -> bool:
        if profile is None or self.probe is None or self.probe.gpus:
            return False
        if profile.runtime == "sim" or profile.gpu.simulated:
            return False
        return not self.simulated_selected()

    # -- start ----------------------------------------------------------------------------
    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        self.revalidate()
        res = self.result
        if res is None or not res.ok or self.query_one("#start", Button).disabled:
            self.app.notify("Fix the marked fields first.", severity="warning")
            return
        self.app.start_run(res.profile, self.base_path)
