"""Domain enums that mirror a protobuf enum agree with it, value for value and name for name.

The services keep their logic free of generated protobuf classes, so a few enums are
mirrored by hand. A value added to a proto enum (or renumbered) must fail here, not turn
into an unnamed number at run time.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from magpie.v1 import common_pb2, feedback_pb2, profiles_pb2, ranking_pb2
from services.feedback.service import EventType, Outcome
from services.profiles.service import AgeBand, Gender, Window
from services.ranking.domain import Degradation, ReasonType, Source


def _same(name: str) -> str:
    return name


MIRRORS: list[tuple[type[IntEnum], EnumTypeWrapper, str, Callable[[str], str]]] = [
    (Source, common_pb2.CandidateSource, "CANDIDATE_SOURCE_", _same),
    (ReasonType, ranking_pb2.ReasonType, "REASON_TYPE_", _same),
    (Degradation, ranking_pb2.Degradation, "DEGRADATION_", _same),
    (EventType, common_pb2.EventType, "EVENT_TYPE_", _same),
    (Outcome, feedback_pb2.EventOutcome, "EVENT_OUTCOME_", _same),
    (Window, profiles_pb2.FeatureWindow, "FEATURE_WINDOW_", lambda n: n.removeprefix("LAST_")),
    (AgeBand, profiles_pb2.AgeBand, "AGE_BAND_", lambda n: n.removeprefix("AGE_")),
    (Gender, profiles_pb2.Gender, "GENDER_", _same),
]


@pytest.mark.parametrize(
    ("mirror", "proto", "prefix", "rename"), MIRRORS, ids=[m[0].__name__ for m in MIRRORS]
)
def test_mirror_matches_its_proto_enum(
    mirror: type[IntEnum], proto: EnumTypeWrapper, prefix: str, rename: Callable[[str], str]
) -> None:
    mirrored = {member.value: prefix + rename(member.name) for member in mirror}
    declared = {value: name for name, value in proto.items() if value != 0 or value in mirrored}

    assert mirrored == declared
