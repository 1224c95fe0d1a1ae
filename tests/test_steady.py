"""Steady-state detection (saturation and request-count rules, online and offline) and gates."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mle_tui.core.measure.steady import (
    RequestCountDetector,
    SaturationDetector,
    Window,
    detect_offline,
    evaluate_gates,
    saturation_threshold,
)


def synthetic_trace(B: int, t_sat: float, t_end: float, t_total: float, seed: int,
                    period_s: tuple[float, float] = (0.1, 0.5), dips: int = 3):
    """A server trace with known saturation [t_sat, t_end]: ramp-up below B - 1 with a full
    queue, saturated at B or B - 1 with brief (< 0.8 s) dips while requests wait, then the
    queue drains (waiting 0) and the batch falls."""
    rng = random.Random(seed)
    span = (t_end - t_sat - 4) / dips  # dips well apart, each inside its own slot
    dip_at = [t_sat + 2 + k * span + rng.uniform(0, span - 1) for k in range(dips)]
    ts, run, wait = [], [], []
    t = 0.0
    while t <= t_total:
        if t < t_sat:
            r, w = float(int((B - 2) * t / t_sat)), 500.0
        elif t <= t_end:
            r = float(B - rng.randint(0, 1))
            if any(d <= t < d + 0.7 for d in dip_at):
                r = float(B // 2)
            w = max(1.0, 500.0 * (1 - (t - t_sat) / (t_end - t_sat)))
        else:
            r, w = float(max(0, int((B - 2) * (1 - (t - t_end) / max(1e-9, t_total - t_end))))), 0.0
        ts.append(t)
        run.append(r)
        wait.append(w)
        t += rng.uniform(*period_s)
    return ts, run, wait


@pytest.mark.parametrize("seed", range(8))
def test_saturation_boundaries_within_one_second(seed: int) -> None:
    rng = random.Random(100 + seed)
    B = rng.choice([4, 8, 16, 64, 256])
    t_sat = rng.uniform(2, 30)
    t_end = t_sat + rng.uniform(20, 300)
    ts, run, wait = synthetic_trace(B, t_sat, t_end, t_end + rng.uniform(3, 40), seed)
    w = detect_offline("saturation", B, ts, run, wait, [], [])
    assert w is not None and w.end_s is not None
    assert abs(w.start_s - t_sat) <= 1.0
    assert abs(w.end_s - t_end) <= 1.0


def test_online_opens_after_one_second_and_closes_when_queue_drains() -> None:
    det = SaturationDetector(8)
    assert det.feed(0.0, 3, 100) is None
    assert det.feed(0.5, 8, 90) is None  # first saturated sample
    assert det.feed(1.0, 7, 80) is None  # B - 1 counts as saturated; 0.5 s so far
    w = det.feed(1.5, 8, 70)
    assert w == Window(start_s=0.5, end_s=None)  # open, start reported at first saturated
    assert det.feed(2.0, 4, 60) == Window(start_s=0.5, end_s=None)  # brief dip, queue full
    assert det.feed(2.5, 8, 50) == Window(start_s=0.5, end_s=None)
    assert det.feed(30.0, 8, 1) == Window(start_s=0.5, end_s=None)
    assert det.feed(30.5, 6, 0) == Window(start_s=0.5, end_s=30.0)  # drained: closed
    assert det.feed(31.0, 2, 0) == Window(start_s=0.5, end_s=30.0)
    assert det.finish() == Window(start_s=0.5, end_s=30.0)


def test_window_opens_once_the_burst_is_admitted() -> None:
    """N requests sent at once: the waiting queue still grows into the first saturated samples
    (the API server taking them in, streaming and answering metrics late); the run starts at
    the first saturated sample at which it has stopped growing."""
    from mle_tui.core.measure.steady import MAX_ADMISSION_S

    ts = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5] + [3.0 + 0.5 * i for i in range(60)]
    run = [0.0, 0.0, 127.0, 128.0, 127.0, 128.0] + [128.0] * 59 + [40.0]
    wait = [0.0, 0.0, 1850.0, 1900.0, 1880.0, 1850.0] + [1800.0 - 25 * i for i in range(59)] + [0.0]
    w = detect_offline("saturation", 128, ts, run, wait, [], [])
    assert w is not None and w.start_s == 2.0 and w.end_s == ts[-2]
    # a queue that peaked in the first saturated sample: the next one starts the run
    wait2 = [0.0, 0.0, 1900.0, 1880.0, 1860.0, 1850.0] + wait[6:]
    assert detect_offline("saturation", 128, ts, run, wait2, [], []).start_s == 1.5  # type: ignore[union-attr]
    # no growth into the run (the queue was full before, or no queue): the first sample
    wait3 = [1900.0] * 6 + wait[6:]
    assert detect_offline("saturation", 128, ts, run, wait3, [], []).start_s == 1.0  # type: ignore[union-attr]
    nan = float("nan")
    assert detect_offline("saturation", 128, ts, run, [nan] * len(ts), [], []).start_s == 1.0  # type: ignore[union-attr]
    # a queue that grows for good (arrivals above service): at most MAX_ADMISSION_S later
    wait4 = [0.0, 0.0] + [100.0 * i for i in range(1, len(ts) - 1)]
    run4 = [0.0, 0.0] + [128.0] * (len(ts) - 2)
    w4 = detect_offline("saturation", 128, ts, run4, wait4, [], [])
    assert w4 is not None and w4.start_s == 1.0 + MAX_ADMISSION_S
    # online: the open window reports the moved start
    det = SaturationDetector(128)
    for t, r, q in zip(ts[:5], run[:5], wait[:5]):
        det.feed(t, r, q)
    assert det.feed(3.5, 128, 1775) == Window(start_s=2.0, end_s=None)


def test_refill_dip_with_requests_waiting_does_not_split() -> None:
    ts = [i * 0.5 for i in range(100)]
    run = [8.0] * 100
    for i in range(20, 24):  # 2 s dip with requests waiting and tokens flowing: a refill
        run[i] = 3.0
    wait = [50.0] * 100
    tokens = [100.0 * i for i in range(100)]
    assert detect_offline("saturation", 8, ts, run, wait, [], []) == Window(start_s=0.0, end_s=49.5)
    assert detect_offline("saturation", 8, ts, run, wait, [], [], generated_tokens=tokens) == \
        Window(start_s=0.0, end_s=49.5)


def test_stall_splits_runs_longest_wins_and_dropped_share_is_reported() -> None:
    ts = [i * 0.5 for i in range(100)]
    run = [8.0] * 100
    for i in range(20, 24):
        run[i] = 3.0
    wait = [50.0] * 100
    # The token counter stops during the dip: a stall, not a refill.
    tokens = [100.0 * min(i, 20) if i < 24 else 100.0 * (i - 3) for i in range(100)]
    from mle_tui.core.measure.steady import saturation_detector

    det = saturation_detector(8, ts, run, wait, generated_tokens=tokens)
    assert det.window == Window(start_s=12.0, end_s=49.5)
    assert det.runs == [(0.0, 9.5), (12.0, 49.5)]
    assert det.dropped_fraction() == pytest.approx(9.5 / 47.0)
    # A dip longer than max_refill_s splits even while tokens flow.
    run2 = [8.0] * 100
    for i in range(20, 32):  # 6 s
        run2[i] = 3.0
    det2 = saturation_detector(8, ts, run2, wait, generated_tokens=[100.0 * i for i in range(100)])
    assert det2.window == Window(start_s=16.0, end_s=49.5)
    # Without a waiting count (NaN) a dip ends the run after max_dip_s.
    nan = float("nan")
    w3 = detect_offline("saturation", 8, ts, run, [nan] * 100, [], [])
    assert w3 == Window(start_s=12.0, end_s=49.5)
    # A short spike of saturation (< 1 s) is no window.
    assert detect_offline("saturation", 8, [0, 0.5, 1.0, 1.5], [2, 8, 8, 2], [9, 9, 9, 0], [], []) is None


def wave_trace(B: int, waves: int, wave_s: float, dip_s: float, period_s: float, dip_level: float):
    """Fixed output lengths: requests finish in waves; each refill dips the running batch to
    ``dip_level * B`` for ``dip_s`` while requests wait and tokens keep flowing."""
    ts, run, wait, tok = [], [], [], []
    ramp = 2.0
    sat0 = ramp
    end = sat0 + waves * (wave_s + dip_s) - dip_s
    t, tokens = 0.0, 0.0
    while t <= end + 5.0:
        if t < sat0:
            r, w = B * t / ramp * 0.8, 1000.0
        elif t <= end:
            phase = (t - sat0) % (wave_s + dip_s)
            r = float(B) if phase < wave_s else float(int(dip_level * B))
            w = 1000.0 * (1 - (t - sat0) / (end - sat0)) + 1.0
        else:
            r, w = float(max(0, int(B * (1 - (t - end) / 5.0)))), 0.0
        tokens += r * period_s * 20
        ts.append(round(t, 9))
        run.append(r)
        wait.append(w)
        tok.append(tokens)
        t += period_s
    return ts, run, wait, tok, sat0, end


@pytest.mark.parametrize("dip_s", [0.2, 0.5, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("period_s", [0.1, 0.5])
def test_window_spans_every_wave_whatever_the_refill_dip(dip_s: float, period_s: float) -> None:
    """The window must not change meaning with the power limit: refill dips of 0.2-3 s (longer
    at low limits) all give the window from first saturation to the drain."""
    ts, run, wait, tok, sat0, end = wave_trace(256, 6, 8.0, dip_s, period_s, 220 / 256)
    for gen in (None, tok):
        w = detect_offline("saturation", 256, ts, run, wait, [], [], generated_tokens=gen)
        assert w is not None and w.end_s is not None
        assert abs(w.start_s - sat0) <= period_s + 1e-9
        assert abs(w.end_s - end) <= dip_s + period_s + 1e-9
        assert w.end_s - w.start_s >= (end - sat0) - dip_s - 2 * period_s


def test_threshold_tolerance_small_batches() -> None:
    assert saturation_threshold(8) == 7
    assert saturation_threshold(3) == 3
    assert saturation_threshold(1) == 1
    assert saturation_threshold(256, tolerance=4) == 252


batch_traces = st.integers(1, 16).flatmap(lambda B: st.tuples(
    st.just(B),
    st.lists(st.tuples(
        st.floats(0.05, 1.5),  # gap to the previous sample
        st.integers(0, B),  # running
        st.sampled_from([0, 0, 1, 5, 40]),  # waiting
    ), max_size=120),
))


@settings(max_examples=300, deadline=None)
@given(batch_traces)
def test_online_equals_offline_saturation(trace) -> None:
    B, rows = trace
    t = 0.0
    ts, run, wait = [], [], []
    det = SaturationDetector(B)
    for gap, r, w in rows:
        t += gap
        ts.append(t)
        run.append(float(r))
        wait.append(float(w))
        live = det.feed(t, r, w)
        if live is not None:
            assert live.start_s <= t and (live.end_s is None or live.end_s <= t)
    assert det.finish() == detect_offline("saturation", B, ts, run, wait, [], [])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10), st.integers(0, 40), st.data())
def test_online_equals_offline_request_count(B: int, N: int, data) -> None:
    starts = data.draw(st.lists(st.floats(0, 100), min_size=N, max_size=N))
    durs = data.draw(st.lists(st.floats(0, 50), min_size=N, max_size=N))
    finished_n = data.draw(st.integers(0, N))
    first = starts
    finish = [s + d for s, d in zip(starts, durs)][:finished_n]
    events = sorted([(t, 0) for t in first] + [(t, 1) for t in finish])
    det = RequestCountDetector(B, N)
    for t, kind in events:
        det.first_token(t) if kind == 0 else det.finished(t)
    assert det.finish() == detect_offline("request-count", B, [], [], [], first, finish, num_requests=N)


def test_request_count_hand_example() -> None:
    # N = 10, B = 3: start at the 3rd first token, end when 10 - 3 - 1 = 6 have finished.
    first = [0.1, 0.2, 0.3, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]
    finish = [5.0, 6.0, 7.0, 9.0, 11.0, 13.0, 15.0, 16.0, 17.0, 18.0]
    assert detect_offline("request-count", 3, [], [], [], first, finish) == Window(start_s=0.3, end_s=13.0)
    det = RequestCountDetector(3, 10)
    assert det.first_token(0.1) is None
    det.first_token(0.2)
    assert det.first_token(0.3) == Window(start_s=0.3, end_s=None)
    for t in finish[:5]:
        det.finished(t)
    assert det.window == Window(start_s=0.3, end_s=None)
    assert det.finished(13.0) == Window(start_s=0.3, end_s=13.0)
    # N - B - 1 < 1: no window.
    assert detect_offline("request-count", 3, [], [], [], first[:4], finish[:4]) is None
    with pytest.raises(ValueError):
        detect_offline("median", 3, [], [], [], first, finish)


def _gates(**kw):
    args = dict(window_s=30.0, mean_batch=7.5, max_num_seqs=8, energy_per_token_j=0.5, cap_fraction=0.1,
                min_window_s=20.0, min_batch_fraction=0.85, max_energy_per_token_j=100.0, max_cap_fraction=0.3)
    args.update(kw)
    return {g.name: g for g in evaluate_gates(**args)}


def test_gates_pass_and_fail_at_their_thresholds() -> None:
    g = _gates()
    assert list(g) == ["window_length", "mean_batch", "energy_per_token", "token_cap"]
    assert all(x.ok for x in g.values())
    assert g["token_cap"].severity == "warning" and g["window_length"].severity == "error"
    assert _gates(window_s=20.0)["window_length"].ok
    assert not _gates(window_s=19.9)["window_length"].ok
    assert _gates(mean_batch=6.8)["mean_batch"].ok  # 0.85 * 8 = 6.8
    assert not _gates(mean_batch=6.79)["mean_batch"].ok
    assert not _gates(energy_per_token_j=0.0)["energy_per_token"].ok
    assert not _gates(energy_per_token_j=100.1)["energy_per_token"].ok
    undefined = _gates(energy_per_token_j=float("nan"))["energy_per_token"]
    assert not undefined.ok and undefined.value is None and "no tokens" in undefined.message
    assert not _gates(cap_fraction=0.3)["token_cap"].ok
    assert "energy_per_token" not in _gates(energy_per_token_j=None)
    assert "token_cap" not in _gates(cap_fraction=None)
    assert "6.79" in _gates(mean_batch=6.79)["mean_batch"].message


def test_window_gate_message_never_reads_as_its_threshold() -> None:
    """On the H200 (2026-11-30) a 19.99-s window was reported as "steady window 20.0 s < 20 s"."""
    assert _gates(window_s=19.99)["window_length"].message == "steady window 19.99 s < 20 s"
    assert _gates(window_s=19.994)["window_length"].message == "steady window 19.99 s < 20 s"
    assert _gates(window_s=19.9996)["window_length"].message == "steady window 20.000 s >= 20 s"  # poll jitter
    assert _gates(window_s=20.04)["window_length"].message == "steady window 20.04 s >= 20 s"
    assert _gates(window_s=20.0)["window_length"].message == "steady window 20.0 s >= 20 s"
    assert _gates(window_s=31.26)["window_length"].message == "steady window 31.3 s >= 20 s"


def test_a_window_of_min_window_s_passes_whatever_its_rounding_and_poll_jitter() -> None:
    """An early stop ends the window at start + n blocks: on the H200 (2026-11-30) a stop at
    20 s read (t0 + 20.0) - t0 = 19.999999999998 and the record was invalid, "20.000 s < 20 s"."""
    for t0 in (0.1, 123.456, 1234.5678, 98765.4321):
        window_s = (t0 + 10 * 2.0) - t0
        gate = _gates(window_s=window_s)["window_length"]
        assert gate.ok, (t0, window_s, gate.message)
    # 40 polls of 0.5 s on the H200 read 19.99915 and 19.99970 s: the poll times' jitter, not a short window
    assert _gates(window_s=19.99915)["window_length"].ok and _gates(window_s=19.9997)["window_length"].ok
    assert not _gates(window_s=19.99)["window_length"].ok  # 10 ms short fails
