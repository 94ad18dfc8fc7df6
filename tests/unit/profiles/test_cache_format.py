"""Profiles as the Redis cache holds them: what is written is read back, and entries cached
by an earlier release still read."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from services.profiles.service import Interaction, StoredProfile
from services.profiles.storage import _decode, _encode


def test_a_profile_reads_back_as_it_was_cached() -> None:
    profile = StoredProfile(
        user_id="u",
        recent=(Interaction("p1", 6, datetime(2024, 1, 1, tzinfo=UTC)),),
        purchased=("p9",),
        disliked=("p2", "p3"),
    )

    assert _decode(_encode(profile)) == profile


def test_an_entry_cached_before_dislikes_existed_reads_as_none_disliked() -> None:
    cached = json.loads(_encode(StoredProfile(user_id="u", purchased=("p9",))))
    del cached["disliked"]

    assert _decode(json.dumps(cached).encode()) == StoredProfile(user_id="u", purchased=("p9",))
