"""`helm test`: every service answers its gRPC health check with SERVING, and ranking
answers one Recommend (an empty catalog gives an empty answer, which still passes: the
call went through ranking, profiles, retrieval, catalog and Triton or their fallbacks).
Addresses come from the release's ConfigMap (MAGPIE_*_ADDR). With the chart's security
values the calls go over (mutual) TLS with the mounted certificate (MAGPIE_TLS_*_FILE) and
carry the services' token (MAGPIE_AUTH_TOKEN_FILE) as a bearer token."""

import os
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from magpie.v1 import ranking_pb2, ranking_pb2_grpc


def read(variable: str) -> bytes:
    with open(os.environ[variable], "rb") as file:
        return file.read()


def channel(address: str) -> grpc.Channel:
    if "MAGPIE_TLS_CERT_FILE" not in os.environ:
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=read("MAGPIE_TLS_CA_FILE"),
        private_key=read("MAGPIE_TLS_KEY_FILE"),
        certificate_chain=read("MAGPIE_TLS_CERT_FILE"),
    )
    return grpc.secure_channel(address, credentials)


metadata: tuple[tuple[str, str], ...] = ()
if "MAGPIE_AUTH_TOKEN_FILE" in os.environ:
    metadata = (("authorization", "Bearer " + read("MAGPIE_AUTH_TOKEN_FILE").decode().strip()),)
services = os.environ["TEST_SERVICES"].split(",")
deadline = time.monotonic() + float(os.environ.get("TEST_TIMEOUT", "120"))
failed = []
for name in services:
    address = os.environ[f"MAGPIE_{name.upper()}_ADDR"]
    with channel(address) as health_channel:
        stub = health_pb2_grpc.HealthStub(health_channel)
        status = None
        while time.monotonic() < deadline:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            except grpc.RpcError as error:
                status = error.code()
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            time.sleep(1)
    print(f"{name:<10} {address:<40} {status}", flush=True)
    if status != health_pb2.HealthCheckResponse.SERVING:
        failed.append(name)
if "ranking" in services and not failed:
    with channel(os.environ["MAGPIE_RANKING_ADDR"]) as ranking_channel:
        stub = ranking_pb2_grpc.RankingServiceStub(ranking_channel)
        request = ranking_pb2.RecommendRequest(user_id=os.environ["TEST_USER"], k=5)
        reply = stub.Recommend(request, timeout=10, metadata=metadata)
        print(
            f"Recommend({request.user_id}): {len(reply.items)} items, model "
            f"{reply.model_version or '-'}, {len(reply.degradations)} degradation(s)",
            flush=True,
        )
sys.exit(1 if failed else 0)
