"""Everything under tests/integration talks to real servers: marked `integration` here, so
`pytest -m "not integration"` runs the unit tier with no server up."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)
