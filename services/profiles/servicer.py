"""gRPC surface of the profile service: validation and protobuf <-> domain only.

Validators reject what is malformed about a request as a whole (batch sizes, user ids);
attributes that cannot be stored are the service's per-user concern, answered in each
user's `ProfileResult`.
"""

from __future__ import annotations

import grpc

from magpie.runtime.validation import Validators, Violations
from magpie.v1 import profiles_pb2 as pb
from magpie.v1 import profiles_pb2_grpc
from services.profiles import config
from services.profiles.service import Attributes, ProfileService, StoredProfile, UpsertOutcome

__all__ = ["VALIDATORS", "ProfileServicer"]


def _validate_upsert(request: pb.UpsertProfilesRequest) -> None:
    v = Violations()
    v.check_count(request.profiles, "profiles", least=1, most=config.MAX_BATCH)
    for i, profile in enumerate(request.profiles):
        v.check_id(profile.user_id, f"profiles[{i}].user_id")
    v.raise_if_any()


def _check_history_limit(v: Violations, limit: int) -> None:
    v.check_range(limit, "history_limit", low=0, high=config.MAX_HISTORY)


def _validate_get(request: pb.GetProfileRequest) -> None:
    v = Violations()
    v.check_id(request.user_id, "user_id")
    _check_history_limit(v, request.history_limit)
    v.raise_if_any()


def _validate_batch_get(request: pb.BatchGetProfilesRequest) -> None:
    v = Violations()
    v.check_ids(request.user_ids, "user_ids", least=1, most=config.MAX_BATCH_GET)
    _check_history_limit(v, request.history_limit)
    v.raise_if_any()


def _validate_delete(request: pb.DeleteProfileRequest) -> None:
    v = Violations()
    v.check_id(request.user_id, "user_id")
    v.raise_if_any()


VALIDATORS: Validators = {
    pb.UpsertProfilesRequest: _validate_upsert,
    pb.GetProfileRequest: _validate_get,
    pb.BatchGetProfilesRequest: _validate_batch_get,
    pb.DeleteProfileRequest: _validate_delete,
}


def _attributes_from_proto(a: pb.UserAttributes) -> Attributes:
    stated = a.HasField("consent")
    return Attributes(
        age_band=a.age_band,
        gender=a.gender,
        region=a.region,
        segments=tuple(a.segments),
        consent_personalization=a.consent.personalization if stated else None,
        consent_analytics=a.consent.analytics if stated else None,
    )


def _consent_to_proto(a: Attributes) -> pb.Consent | None:
    if a.consent_personalization is None and a.consent_analytics is None:
        return None
    return pb.Consent(
        personalization=bool(a.consent_personalization), analytics=bool(a.consent_analytics)
    )


def _results(outcomes: list[UpsertOutcome]) -> list[pb.ProfileResult]:
    return [pb.ProfileResult(user_id=o.user_id, ok=not o.error, error=o.error) for o in outcomes]


def _profile_to_proto(p: StoredProfile) -> pb.Profile:
    a = p.attributes
    c = p.counts
    profile = pb.Profile(
        user_id=p.user_id,
        known=p.known,
        attributes=pb.UserAttributes(
            age_band=a.age_band,  # type: ignore[arg-type]
            gender=a.gender,  # type: ignore[arg-type]
            region=a.region,
            segments=a.segments,
            consent=_consent_to_proto(a),
        ),
        category_affinities=[
            pb.CategoryAffinity(category=f.category, window=f.window, score=f.score)  # type: ignore[arg-type]
            for f in p.affinities
        ],
        purchased_product_ids=p.purchased,
        disliked_product_ids=p.disliked,
        counts=pb.InteractionCounts(
            impressions=c.impressions,
            clicks=c.clicks,
            add_to_carts=c.add_to_carts,
            purchases=c.purchases,
        ),
    )
    for interaction in p.recent:
        added = profile.recent_interactions.add(
            product_id=interaction.product_id,
            event_type=interaction.event_type,
        )
        added.occurred_at.FromDatetime(interaction.occurred_at)
    if p.updated_at is not None:
        profile.updated_at.FromDatetime(p.updated_at)
    return profile


class ProfileServicer(profiles_pb2_grpc.ProfileServiceServicer):
    def __init__(self, service: ProfileService) -> None:
        self._service = service

    async def UpsertProfiles(
        self, request: pb.UpsertProfilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertProfilesResponse:
        users = [(p.user_id, _attributes_from_proto(p.attributes)) for p in request.profiles]
        return pb.UpsertProfilesResponse(results=_results(await self._service.upsert(users)))

    async def GetProfile(
        self, request: pb.GetProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProfileResponse:
        (profile,) = await self._service.get_many([request.user_id], request.history_limit)
        return pb.GetProfileResponse(profile=_profile_to_proto(profile))

    async def BatchGetProfiles(
        self, request: pb.BatchGetProfilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchGetProfilesResponse:
        profiles = await self._service.get_many(list(request.user_ids), request.history_limit)
        return pb.BatchGetProfilesResponse(profiles=[_profile_to_proto(p) for p in profiles])

    async def DeleteProfile(
        self, request: pb.DeleteProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteProfileResponse:
        existed, deleted_events = await self._service.delete(request.user_id)
        return pb.DeleteProfileResponse(existed=existed, deleted_events=deleted_events)
