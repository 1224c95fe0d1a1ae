"""The first stop is obeyed while preparing requests and inside the simulator's loops: every
long loop checks the cancel event the caller passes and raises Cancelled. No timing asserts:
each test sets the event from inside the work and checks the loop stops there."""

from __future__ import annotations

import threading

import pytest

from mle_tui.core import datasets
from mle_tui.core.clock import VirtualClock
from mle_tui.core.dataset_types import Request
from mle_tui.core.errors import Cancelled
from mle_tui.core.profile import decode_profile
from mle_tui.core.sim.llm_server import Cancelled as SimCancelled
from mle_tui.core.sim.llm_server import LlmServerSim

PROFILE = """
name = "t"
task = "chat"
runtime = "sim"
[model]
id = "m"
[dataset]
name = "{name}"
{path}
num_requests = {n}
repeats = 3
[sweep]
max_num_seqs = 8
"""


def test_cancel_before_start_and_during_synthetic_generation() -> None:
    p = decode_profile(PROFILE.format(name="synthetic", path="", n=5000))
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        datasets.load_requests(p, cancel=ev)
    assert len(datasets.load_requests(p, cancel=threading.Event())) == 15000


class SettingTokenizer:
    """Sets the cancel event on its 10th encode; counts calls after that."""

    def __init__(self, ev: threading.Event) -> None:
        self.ev, self.calls = ev, 0

    def encode(self, text: str) -> list[int]:
        self.calls += 1
        if self.calls == 10:
            self.ev.set()
        return [1] * max(4, len(text.split()))


def test_cancel_while_tokenising_a_dataset_file(tmp_path) -> None:
    rows = "\n".join('{"prompt": "%s", "output_len": 8}' % ("word " * 10) for _ in range(2000))
    (tmp_path / "d.jsonl").write_text(rows)
    p = decode_profile(PROFILE.format(name="jsonl", path='path = "d.jsonl"', n=1000))
    ev = threading.Event()
    tok = SettingTokenizer(ev)
    with pytest.raises(Cancelled):
        datasets.load_requests(p, tokenizer=tok, base_dir=tmp_path, cancel=ev)
    assert tok.calls <= 11  # stopped at the next candidate, not after all 1,000


def test_cancel_while_a_large_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A read/decode that never returns on its own (one long C call): cancel still returns."""
    (tmp_path / "d.jsonl").write_text('{"prompt": "x y z w", "output_len": 8}\n')
    p = decode_profile(PROFILE.format(name="jsonl", path='path = "d.jsonl"', n=4))
    release, started = threading.Event(), threading.Event()
    real = datasets._read_bytes

    def slow(path, what, *a, **k):
        started.set()
        release.wait(120)
        return real(path, what, *a, **k)

    monkeypatch.setattr(datasets, "_read_bytes", slow)
    ev = threading.Event()
    threading.Thread(target=lambda: (started.wait(60), ev.set()), daemon=True).start()
    try:
        with pytest.raises(Cancelled):
            datasets.load_requests(p, base_dir=tmp_path, cancel=ev)
        assert not release.is_set()  # returned while the read was still blocked
    finally:
        release.set()


def test_simulator_idle_gap_is_interruptible() -> None:
    """A very slow arrival (one request a day of virtual time) emits ~864,000 samples per gap;
    the cancel set by the first sample stops the loop within 1,024 samples."""
    ev = threading.Event()
    seen = []

    def on_batch(*a):
        seen.append(a[0])
        ev.set()

    reqs = [Request(id=i, input_tokens=8, output_tokens=4) for i in range(2)]
    sim = LlmServerSim(reqs, max_num_seqs=2, clock=VirtualClock(), send_times_s=[0.0, 86_400.0],
                       cancel=ev, on_batch=on_batch)
    with pytest.raises(SimCancelled):
        sim.run()
    assert 1 <= len(seen) <= 1024
