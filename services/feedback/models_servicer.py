"""gRPC surface of ModelService (served by the feedback process): validation and protobuf
<-> domain only."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from magpie.modelstore.registry import Promotion
from magpie.runtime.validation import Validators, Violations
from magpie.v1 import models_pb2 as pb
from magpie.v1 import models_pb2_grpc
from services.feedback import config
from services.feedback.models import ModelsService, OnlineCounts, Rate, Verdict, VersionView

__all__ = ["MODEL_VALIDATORS", "ModelServicer"]


def _validate_list(request: pb.ListModelVersionsRequest) -> None:
    v = Violations()
    if request.model_name:
        v.check_id(request.model_name, "model_name")
    v.check_range(request.limit, "limit", low=0, high=config.MAX_MODEL_LISTING)
    v.raise_if_any()


def _validate_metrics(request: pb.GetOnlineMetricsRequest) -> None:
    v = Violations()
    if request.HasField("since"):
        v.check_timestamp(request.since, "since")
    versions = request.model_versions
    v.check_count(versions, "model_versions", most=config.MAX_METRIC_VERSIONS)
    for i, version in enumerate(versions[: config.MAX_METRIC_VERSIONS]):  # bounded answer
        field = f"model_versions[{i}]"
        if not 0 < len(version) <= config.MAX_MODEL_VERSION_LENGTH:
            v.add(field, f"must be 1 to {config.MAX_MODEL_VERSION_LENGTH} characters")
        elif not version.isprintable():
            v.add(field, "must contain printable characters only")
    v.raise_if_any()


MODEL_VALIDATORS: Validators = {
    pb.ListModelVersionsRequest: _validate_list,
    pb.GetOnlineMetricsRequest: _validate_metrics,
}


def _timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _verdict(verdict: Verdict | None) -> pb.GateVerdict | None:
    if verdict is None:
        return None
    return pb.GateVerdict(
        accepted=verdict.accepted,
        reason=verdict.reason,
        checks=[
            pb.GateCheck(name=c.name, passed=c.passed, reason=c.reason) for c in verdict.checks
        ],
    )


def _version(view: VersionView) -> pb.ModelVersion:
    return pb.ModelVersion(
        version=view.version,
        status=view.status,
        aliases=view.aliases,
        offline_metrics=view.offline_metrics,
        verdict=_verdict(view.verdict),
        created_at=_timestamp(view.created_at),
        run_id=view.run_id,
    )


def _promotion(p: Promotion) -> pb.Promotion:
    return pb.Promotion(
        from_version=p.from_version or 0,
        to_version=p.to_version,
        action=p.action,
        trigger=p.trigger,
        reason=p.reason,
        at=_timestamp(p.at),
    )


def _rate(rate: Rate) -> pb.Rate:
    return pb.Rate(value=rate.value, low=rate.low, high=rate.high)


def _metrics(counts: Sequence[OnlineCounts]) -> list[pb.VersionMetrics]:
    return [
        pb.VersionMetrics(
            model_version=c.model_version,
            impressions=c.impressions,
            clicks=c.clicks,
            add_to_carts=c.add_to_carts,
            purchases=c.purchases,
            click_through_rate=_rate(c.click_through_rate),
            add_to_cart_rate=_rate(c.add_to_cart_rate),
            purchase_rate=_rate(c.purchase_rate),
        )
        for c in counts
    ]


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: ModelsService, model_name: str) -> None:
        """``model_name``: the registry name a request without one reads (the process's
        MAGPIE_MODEL_NAME)."""
        self._service = service
        self._model_name = model_name

    async def ListModelVersions(
        self, request: pb.ListModelVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelVersionsResponse:
        history = await self._service.history(
            request.model_name or self._model_name, request.limit or config.DEFAULT_MODEL_LISTING
        )
        return pb.ListModelVersionsResponse(
            model_name=history.model_name,
            versions=[_version(view) for view in history.versions],
            promotions=[_promotion(p) for p in history.promotions],
        )

    async def GetOnlineMetrics(
        self, request: pb.GetOnlineMetricsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetOnlineMetricsResponse:
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        counts = await self._service.online(since, list(request.model_versions))
        return pb.GetOnlineMetricsResponse(versions=_metrics(counts))
