"""Keeping Python's cyclic garbage collector off the request path.

A full collection walks every tracked object in the process: measured at 30-50 ms per
service right after start-up (the imported modules alone) and more once a model or the
product table is loaded, which lands on whatever request is in flight as a p99 spike.
Objects loaded to live as long as the process (modules, a model version, a bulk table
read) are moved out of the collector's generations once, after they are built, so
collections only walk what requests allocate. Frozen objects are still freed by
reference counting when the last reference goes (a swapped-out model is).
"""

from __future__ import annotations

import gc

__all__ = ["freeze_long_lived"]


def freeze_long_lived(*, collect: bool = False) -> None:
    """Exempts every object alive now from future collections (``gc.freeze``).

    ``collect`` first frees what is already garbage (a full, slow collection: at start-up
    only, never while serving).
    """
    if collect:
        gc.collect()
    gc.freeze()
