"""The Makefile's install recipe pins pip exactly, and `make audit` stays out of it and CI."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support import REPO


def _commands(target: str, venv: Path) -> str:
    """What `make TARGET` would run for a venv that does not exist yet (a dry run)."""
    return subprocess.run(
        ["make", "--dry-run", "--always-make", f"VENV={venv}", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_install_recipe_pins_pip_to_one_version(tmp_path: Path) -> None:
    commands = _commands(f"{tmp_path}/.installed", tmp_path)
    (pip_itself,) = [
        line for line in commands.splitlines() if re.search(r"pip install .*\spip(==\S*)?$", line)
    ]
    assert re.search(r"\spip==\d+(\.\d+)+$", pip_itself), pip_itself
    assert "pip-audit" not in commands


def test_audit_uses_its_own_pinned_pip_audit_on_the_lock(tmp_path: Path) -> None:
    commands = _commands("audit", tmp_path)
    assert f"{tmp_path}/audit/bin/pip install --quiet pip-audit==2.10.1" in commands
    assert (
        f"{tmp_path}/audit/bin/pip-audit --requirement requirements.lock --require-hashes"
        " --disable-pip --strict" in " ".join(commands.replace("\\\n", " ").split())
    )
    assert "audit" not in (REPO / ".ci" / "run").read_text()
