"""How the soak benchmark reads memory: VmRSS of a process and its children, and the
growth after the warm-up as a least-squares slope."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from tools.bench._platform import rss_mb, with_descendants
from tools.bench.soak import rss_slopes


def test_the_slope_ignores_the_warm_up_and_is_per_minute() -> None:
    times = [0.0, 30.0, 60.0, 90.0, 120.0, 150.0, 180.0]
    growing = [100.0, 400.0, 200.0, 201.0, 202.0, 203.0, 204.0]  # +1 MiB per 30 s after 60 s
    flat = [50.0, 90.0, 80.0, 80.0, 80.0, 80.0, 80.0]
    slopes = rss_slopes(times, {"leaky": growing, "flat": flat}, warmup_s=60.0)
    assert slopes["leaky"] == pytest.approx(2.0)
    assert slopes["flat"] == pytest.approx(0.0, abs=1e-9)


def test_no_slope_without_two_samples_after_the_warm_up() -> None:
    assert math.isnan(rss_slopes([0.0, 30.0, 61.0], {"p": [1.0, 2.0, 3.0]}, 60.0)["p"])


def test_rss_counts_the_children_and_nothing_for_a_gone_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        family = with_descendants(os.getpid())
        assert child.pid in family
        assert rss_mb(family) > rss_mb([os.getpid()]) > 1.0
    finally:
        child.kill()
        child.wait()
    assert rss_mb([child.pid]) == 0.0
