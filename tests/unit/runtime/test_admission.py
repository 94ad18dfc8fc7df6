"""Admission control: slots, deadline-aware refusal and per-caller rates."""

from __future__ import annotations

import pytest

from magpie.runtime.admission import Admission
from magpie.runtime.errors import ResourceExhausted

M = "/magpie.v1.RankingService/Recommend"


def test_a_full_process_refuses_until_a_slot_frees() -> None:
    admission = Admission(2)
    admission.enter(M, "a", None)
    admission.enter(M, "a", None)
    with pytest.raises(ResourceExhausted):
        admission.enter(M, "b", None)
    admission.leave(M, None)
    admission.enter(M, "b", None)
    assert admission.in_flight == 2


def test_a_deadline_shorter_than_the_usual_work_is_refused_at_once() -> None:
    admission = Admission(10)
    admission.enter(M, "a", 1.0)  # nothing known yet: admitted
    admission.leave(M, 0.2)
    admission.enter(M, "a", 0.3)
    admission.leave(M, None)
    with pytest.raises(ResourceExhausted, match="deadline"):
        admission.enter(M, "a", 0.1)
    admission.enter("/other/Method", "a", 0.1)  # another method's cost is its own


def test_failures_and_streams_do_not_teach_the_cost() -> None:
    admission = Admission(10)
    admission.enter(M, "a", None)
    admission.leave(M, None)
    admission.enter(M, "a", 0.001)


def test_each_caller_has_its_own_rate() -> None:
    now = [0.0]
    admission = Admission(100, rate_per_caller=10.0, burst=2.0, clock=lambda: now[0])
    for _ in range(2):
        admission.enter(M, "greedy", None)
    with pytest.raises(ResourceExhausted, match="rate"):
        admission.enter(M, "greedy", None)
    admission.enter(M, "polite", None)  # not charged for the greedy one
    now[0] += 0.1  # one token back at 10/s
    admission.enter(M, "greedy", None)
    with pytest.raises(ResourceExhausted):
        admission.enter(M, "greedy", None)


def test_more_work_in_flight_than_usual_means_a_longer_expected_wait() -> None:
    admission = Admission(100)
    for _ in range(50):  # one call at a time, 100 ms each
        admission.enter(M, "a", None)
        admission.leave(M, 0.1)
    admission.enter(M, "a", 0.15)  # alone: ~0.1 s expected, fits
    for _ in range(3):
        admission.enter(M, "a", None)
    with pytest.raises(ResourceExhausted, match="deadline"):
        admission.enter(M, "a", 0.15)  # 4 ahead of it: ~0.5 s expected
    admission.enter(M, "a", 1.0)
