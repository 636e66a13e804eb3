"""The benchmark's sample loop (no GPU needed): every sample is queued behind the spin kernel; a sample whose
launches took longer to queue than the spin would show launch gaps, so it is redone with twice the spin."""

from __future__ import annotations

import pytest

from awqfmt.gpu import bench


class FakeClock:
    """time.perf_counter stand-in that each fake launch advances by `launch_s`."""

    def __init__(self, launch_s: float):
        self.t = 0.0
        self.launch_s = launch_s

    def __call__(self) -> float:
        return self.t

    def launch(self) -> None:
        self.t += self.launch_s


@pytest.fixture
def spins(monkeypatch):
    """Record the spin lengths requested instead of launching the kernel; start from HOLD_NS each test."""
    seen: list[int] = []
    monkeypatch.setattr(bench, "_hold", lambda ns, stream=None: seen.append(ns))
    monkeypatch.setitem(bench._hold_state, "ns", bench.HOLD_NS)
    return seen


def _samples(clock, monkeypatch, n=3, per_sample=10):
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    elapsed = iter(range(100, 10_000, 100))  # ms "measured" by the end event, one per recorded sample
    return bench._held_samples(lambda: "start", clock.launch, lambda a: float(next(elapsed)), n, per_sample)


def test_fast_queuing_keeps_the_first_spin(spins, monkeypatch):
    out = _samples(FakeClock(launch_s=5e-6), monkeypatch)  # 50 us to queue 10 launches, spin 1 ms
    assert spins == [bench.HOLD_NS] * 3
    assert out == [10.0, 20.0, 30.0]  # each sample's elapsed time / launches per sample


def test_slow_queuing_redoes_the_sample_with_a_doubled_spin(spins, monkeypatch):
    # 10 launches x 100 us = 1 ms to queue: more than 0.8 of a 1 ms spin, fine under a 2 ms one
    out = _samples(FakeClock(launch_s=100e-6), monkeypatch)
    assert spins == [bench.HOLD_NS, 2 * bench.HOLD_NS, 2 * bench.HOLD_NS, 2 * bench.HOLD_NS]
    assert out == [20.0, 30.0, 40.0]  # the first (gappy) sample was dropped
    assert bench._hold_state["ns"] == 2 * bench.HOLD_NS  # later timings start from the longer spin


def test_queuing_slower_than_any_spin_gives_up_the_spin(spins, monkeypatch):
    monkeypatch.setattr(bench, "HOLD_MAX_NS", 4 * bench.HOLD_NS)
    out = _samples(FakeClock(launch_s=1.0), monkeypatch, n=2)
    assert spins == [bench.HOLD_NS, 2 * bench.HOLD_NS, 4 * bench.HOLD_NS]  # then no spin at all
    assert bench._hold_state["ns"] == 0
    assert out == [40.0, 50.0]


def test_hold_off_by_environment(monkeypatch, spins):
    monkeypatch.setitem(bench._hold_state, "ns", 0)  # what AWQFMT_BENCH_HOLD=0 sets at import
    out = _samples(FakeClock(launch_s=1.0), monkeypatch, n=2)
    assert spins == [] and out == [10.0, 20.0]


def test_summary_counts_targets_with_and_without_pdl():
    rows = [
        {"K": 8192, "N": 8192, "M": 1, "speedup": 3.25, "target": 3.0, "target_met": True, "target_met_no_pdl": False},
        {"K": 8192, "N": 8192, "M": 16, "speedup": 2.38, "target": 2.5, "target_met": False, "target_met_no_pdl": False},
        {"K": 8192, "N": 28672, "M": 16, "speedup": 2.51, "target": 2.5, "target_met": True},  # ran without PDL
        {"K": 8192, "N": 8192, "M": 256, "speedup": 0.44, "target": None, "target_met": None},
    ]
    s = bench.summarize(rows)
    assert (s["targets_checked"], s["targets_met"], s["targets_met_no_pdl"]) == (3, 2, 1)
    assert s["missed"] == ["8192x8192 M=16: 2.38x < 2.5x"]
