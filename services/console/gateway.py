"""The console's only way to Magpie's data: the services' public gRPC APIs.

Each call carries the viewer's own token, so a service answers the console exactly as it
would answer that person. With a tokens file the console presents no token of its own
(a call without a signed-in viewer never happens then); without one, calls carry the
process's token (``auth_token_file``) if it has one.
"""

from __future__ import annotations

from google.protobuf import field_mask_pb2

from magpie.runtime.clients import open_channel
from magpie.runtime.settings import Settings
from magpie.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    feedback_pb2_grpc,
    models_pb2_grpc,
    profiles_pb2_grpc,
    ranking_pb2_grpc,
    retrieval_pb2_grpc,
)
from services.console import config
from services.console.auth import Viewer

__all__ = ["Gateway"]

_PRODUCT_FIELDS = [
    f.name for f in catalog_pb2.Product.DESCRIPTOR.fields if f.name != "stats"
]  # stats are the costly part of a product read, and no card shows them
_MAX_IDS = 2000
"""GetProducts' limit of ids per call."""


class Gateway:
    """gRPC stubs of every Magpie service on channels opened once per process."""

    def __init__(self, settings: Settings) -> None:
        if settings.auth_tokens_file:
            settings = settings.model_copy(update={"auth_token_file": ""})
        addresses = (
            settings.ranking_addr,
            settings.profiles_addr,
            settings.catalog_addr,
            settings.retrieval_addr,
            settings.feedback_addr,
        )
        self._channels = [open_channel(address, settings) for address in addresses]
        ranking, profiles, catalog, retrieval, feedback = self._channels
        self.ranking = ranking_pb2_grpc.RankingServiceStub(ranking)
        self.profiles = profiles_pb2_grpc.ProfileServiceStub(profiles)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(catalog)
        self.retrieval = retrieval_pb2_grpc.RetrievalServiceStub(retrieval)
        self.feedback = feedback_pb2_grpc.FeedbackServiceStub(feedback)
        self.models = models_pb2_grpc.ModelServiceStub(feedback)  # served by feedback

    @staticmethod
    def metadata(viewer: Viewer) -> tuple[tuple[str, str], ...]:
        """The call metadata presenting `viewer`'s token (none when the console is open)."""
        return (("authorization", f"Bearer {viewer.token}"),) if viewer.token else ()

    async def products(self, viewer: Viewer, ids: list[str]) -> dict[str, catalog_pb2.Product]:
        """The products among `ids` the catalog knows (hidden and withdrawn ones too, so
        history still has its titles), by id, without their statistics."""
        wanted = list(dict.fromkeys(i for i in ids if i))
        found: dict[str, catalog_pb2.Product] = {}
        for start in range(0, len(wanted), _MAX_IDS):
            reply = await self.catalog.GetProducts(
                catalog_pb2.GetProductsRequest(
                    product_ids=wanted[start : start + _MAX_IDS],
                    include_inactive=True,
                    read_mask=field_mask_pb2.FieldMask(paths=_PRODUCT_FIELDS),
                ),
                metadata=self.metadata(viewer),
                timeout=config.CALL_SECONDS,
            )
            found.update((p.product_id, p) for p in reply.products)
        return found

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()
