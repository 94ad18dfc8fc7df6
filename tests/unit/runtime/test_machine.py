"""The machine description recorded beside every benchmark and evaluation."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from magpie.runtime.machine import machine_info


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs /proc/cpuinfo")
def test_machine_names_the_cpu_generation_and_its_int8_flags() -> None:
    info = machine_info()
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    flags = next(line for line in lines if line.startswith("flags")).split(":", 1)[1].split()

    assert info["cores"] == os.cpu_count()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", info["date"])
    assert re.fullmatch(r"\d+/\d+", info["cpu_family_model"])
    assert info["cpu"]
    assert ("avx512_vnni" in info["simd"]) == ("avx512_vnni" in flags)
    assert ("avx2" in info["simd"]) == ("avx2" in flags)
