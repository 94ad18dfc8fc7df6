"""The alert rules parse (`promtool check rules`) and each alert fires on the series that
should raise it and on no others (`promtool test rules alerts_test.yaml`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

HERE = Path(__file__).parent
RULES = REPO / "helm" / "magpie" / "files" / "alerts.yaml"
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None,
    reason="PROMTOOL MISSING: install Debian's prometheus package (tools/install-test-packages)",
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=HERE, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_rules_parse() -> None:
    done = _promtool("check", "rules", str(RULES))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_every_alert_fires_when_it_should_and_only_then() -> None:
    done = _promtool("test", "rules", "alerts_test.yaml")

    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_unit_tested_and_has_a_runbook_section() -> None:
    import yaml

    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tested = {
        case["alertname"]
        for test in yaml.safe_load((HERE / "alerts_test.yaml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    runbook = (REPO / "docs" / "runbook.md").read_text().lower()

    assert alerts == tested
    for alert in alerts:
        assert f"## {alert.lower()}" in runbook, alert
