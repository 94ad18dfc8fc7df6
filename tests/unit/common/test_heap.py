"""services.common.heap: what is alive is frozen, what comes later is not."""

import gc

from services.common.heap import freeze_long_lived


def test_objects_alive_at_the_call_leave_the_collected_generations() -> None:
    try:
        long_lived = [{"model": i} for i in range(1000)]
        freeze_long_lived(collect=True)
        frozen = gc.get_freeze_count()
        assert frozen >= len(long_lived)
        assert sum(gc.get_count()) < frozen
        later = [{"request": i} for i in range(10)]
        assert gc.get_freeze_count() == frozen
        assert later and long_lived
    finally:
        gc.unfreeze()
