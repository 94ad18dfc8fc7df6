"""Keeping Python's cyclic garbage collector off the request path.

A full collection walks every tracked object in the process: measured at 30-50 ms per
service right after start-up (the imported modules alone) and more once a model or the
product table is loaded, which lands on whatever request is in flight as a p99 spike.
Objects loaded to live as long as the process (modules, a model version, a bulk table
read) are moved out of the collector's generations once, after they are built, so
collections only walk what requests allocate. Frozen objects are still freed by
reference counting when the last reference goes (a swapped-out model is).

Freezing is a decision for a whole process, so only a service's entry point turns it
on (:func:`start_freezing`). A process that hosts services and event loops one after
another, as the test suite does, must go on collecting the cycles they leave behind:
there :func:`freeze_long_lived` does nothing.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_long_lived", "start_freezing"]

_freezing = False


def start_freezing() -> None:
    """Frees what is garbage already (one full collection), freezes the rest, and lets
    later :func:`freeze_long_lived` calls freeze too. Call once, after start-up."""
    global _freezing
    _freezing = True
    gc.collect()
    gc.freeze()


def freeze_long_lived() -> None:
    """Exempts every object alive now from future collections (``gc.freeze``), in a
    process that called :func:`start_freezing`."""
    if _freezing:
        gc.freeze()
