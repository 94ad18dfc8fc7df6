"""magpie.runtime.heap, in a process of its own: freezing is process-wide."""

import subprocess
import sys

_SCRIPT = """
import gc
from magpie.runtime.heap import freeze_long_lived, start_freezing

freeze_long_lived()
assert gc.get_freeze_count() == 0, "froze before the entry point allowed it"
model = [[i] for i in range(1000)]
start_freezing()
at_start = gc.get_freeze_count()
assert at_start >= len(model)
requests = [[i] for i in range(500)]  # lists: always tracked by the collector
assert gc.get_freeze_count() == at_start, "objects made later are collected as usual"
freeze_long_lived()
assert gc.get_freeze_count() >= at_start + len(requests)
"""


def test_only_a_process_that_started_freezing_freezes() -> None:
    done = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
