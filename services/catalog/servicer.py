"""gRPC surface of the catalog service: request validation and protobuf <-> domain only.

Validators reject what is malformed about a request as a whole (batch sizes,
ids of reads, filters, timestamps outside the protobuf range, day counts); a product whose
content cannot be stored is the service's per-item concern, answered in its
`ItemResult`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp

from magpie.runtime.filters import check_filter, filter_from_proto
from magpie.runtime.validation import Validators, Violations
from magpie.v1 import catalog_pb2 as pb
from magpie.v1 import catalog_pb2_grpc, common_pb2
from services.catalog import config
from services.catalog.service import (
    CatalogService,
    ItemOutcome,
    Price,
    ProductDraft,
    ProductQuery,
)

__all__ = ["VALIDATORS", "CatalogServicer"]

_SETTABLE_STATUSES = (
    pb.PRODUCT_STATUS_ACTIVE,
    pb.PRODUCT_STATUS_HIDDEN,
    pb.PRODUCT_STATUS_WITHDRAWN,
)


def _price(money: common_pb2.Money) -> Price:
    return Price(money.currency_code, money.units, money.nanos)


def _validate_upsert(request: pb.UpsertProductsRequest) -> None:
    v = Violations()
    v.check_count(request.products, "products", least=1, most=config.MAX_UPSERT_BATCH)
    for i, product in enumerate(request.products):
        if product.HasField("created_at"):
            v.check_timestamp(product.created_at, f"products[{i}].created_at")
    v.raise_if_any()


def _validate_get(request: pb.GetProductsRequest) -> None:
    v = Violations()
    v.check_ids(request.product_ids, "product_ids", least=1, most=config.MAX_GET_BATCH)
    v.check(
        request.read_mask.IsValidForDescriptor(pb.Product.DESCRIPTOR),
        "read_mask",
        "must name fields of magpie.v1.Product",
    )
    v.raise_if_any()


def _validate_list(request: pb.ListProductsRequest) -> None:
    v = Violations()
    v.check_range(request.page_size, "page_size", low=0, high=config.MAX_PAGE_SIZE)
    check_filter(v, request.filter)
    if request.HasField("updated_since"):
        v.check_timestamp(request.updated_since, "updated_since")
    v.raise_if_any()


def _validate_set_status(request: pb.SetProductStatusRequest) -> None:
    v = Violations()
    v.check_ids(request.product_ids, "product_ids", least=1, most=config.MAX_STATUS_BATCH)
    v.check(
        request.status in _SETTABLE_STATUSES,
        "status",
        "must be ACTIVE, HIDDEN or WITHDRAWN",
    )
    v.raise_if_any()


def _validate_activity(request: pb.GetProductActivityRequest) -> None:
    v = Violations()
    v.check_id(request.product_id, "product_id")
    v.check_range(request.days, "days", low=0, high=config.MAX_ACTIVITY_DAYS)
    v.raise_if_any()


VALIDATORS: Validators = {
    pb.UpsertProductsRequest: _validate_upsert,
    pb.GetProductsRequest: _validate_get,
    pb.ListProductsRequest: _validate_list,
    pb.SetProductStatusRequest: _validate_set_status,
    pb.GetProductActivityRequest: _validate_activity,
}


def _masked(product: pb.Product, mask: FieldMask) -> pb.Product:
    if any("." in path for path in mask.paths):  # sub-fields: the general (slower) way
        out = pb.Product()
        mask.MergeMessage(product, out)
        return out
    keep = set(mask.paths)
    for field, _ in product.ListFields():
        if field.name not in keep:
            product.ClearField(field.name)  # type: ignore[arg-type]
    return product


def _datetime(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def _draft_from_proto(p: pb.Product) -> ProductDraft:
    return ProductDraft(
        product_id=p.product_id,
        title=p.title,
        description=p.description,
        category_path=tuple(p.category_path),
        tags=tuple(p.tags),
        brand=p.brand,
        price=_price(p.price) if p.HasField("price") else None,
        rating=p.rating,
        stock=p.stock,
        created_at=_datetime(p.created_at) if p.HasField("created_at") else None,
        attributes=dict(p.attributes),
    )


def _query_from_proto(request: pb.ListProductsRequest) -> ProductQuery:
    return ProductQuery(
        where=filter_from_proto(request.filter),
        in_stock_only=request.in_stock_only,
        include_inactive=request.include_inactive,
        updated_since=_datetime(request.updated_since)
        if request.HasField("updated_since")
        else None,
    )


def _results(outcomes: list[ItemOutcome]) -> list[pb.ItemResult]:
    return [pb.ItemResult(id=o.id, ok=not o.error, error=o.error) for o in outcomes]


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, service: CatalogService) -> None:
        self._service = service

    async def UpsertProducts(
        self, request: pb.UpsertProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpsertProductsResponse:
        outcomes = await self._service.upsert([_draft_from_proto(p) for p in request.products])
        return pb.UpsertProductsResponse(results=_results(outcomes))

    async def GetProducts(
        self, request: pb.GetProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProductsResponse:
        mask = request.read_mask
        with_stats = not mask.paths or any(p.split(".")[0] == "stats" for p in mask.paths)
        products, missing = await self._service.get(
            request.product_ids, include_inactive=request.include_inactive, with_stats=with_stats
        )
        if mask.paths:
            products = [_masked(product, mask) for product in products]
        return pb.GetProductsResponse(products=products, missing_product_ids=missing)

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProductsResponse:
        page = await self._service.list(
            _query_from_proto(request),
            request.page_size or config.DEFAULT_PAGE_SIZE,
            request.page_token,
        )
        return pb.ListProductsResponse(products=page.products, next_page_token=page.next_page_token)

    async def SetProductStatus(
        self, request: pb.SetProductStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetProductStatusResponse:
        outcomes = await self._service.set_status(request.product_ids, request.status)
        return pb.SetProductStatusResponse(results=_results(outcomes))

    async def GetProductActivity(
        self, request: pb.GetProductActivityRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetProductActivityResponse:
        days = await self._service.activity(
            request.product_id, request.days or config.DEFAULT_ACTIVITY_DAYS
        )
        return pb.GetProductActivityResponse(days=days)
