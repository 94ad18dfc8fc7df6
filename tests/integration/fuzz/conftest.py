"""The fuzzing platform, shared by the package: five services against a fresh database,
no model (tests/support_fuzz.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support_fuzz import Fuzzer, FuzzPlatform, fuzz_platform


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzPlatform]:
    with fuzz_platform(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


@pytest.fixture(scope="package")
def fuzzer(platform: FuzzPlatform) -> Iterator[Fuzzer]:
    with Fuzzer(platform) as checking:
        yield checking
