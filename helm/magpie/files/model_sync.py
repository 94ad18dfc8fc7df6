"""Triton sidecar: keep this replica serving every version present in the repository.

Publishing loads a new version on the one Triton replica the worker's gRPC channel
reached (explicit model control); every other replica, and one that restarted, would not
know. This loop watches ``<repository>/<model>/<N>`` directories and calls
``load_model`` on its own server (127.0.0.1) whenever the set changes or a version is
not ready, so all replicas converge within a few seconds. It writes a heartbeat file that
the pod's probes check.
"""

import os
import time
from pathlib import Path

import tritonclient.grpc as grpcclient

repository = Path(os.environ["MODEL_SYNC_REPOSITORY"])
model = os.environ["MODEL_SYNC_MODEL"]
interval = float(os.environ.get("MODEL_SYNC_INTERVAL", "2"))
heartbeat = Path(os.environ.get("MODEL_SYNC_HEARTBEAT", "/tmp/model-sync.alive"))
TLS_DIR = os.environ.get("MODEL_SYNC_TLS_DIR", "")
"""With Triton's gRPC on mutual TLS: the pod's certificate, key and CA, and the name its
certificate carries (the sidecar dials 127.0.0.1)."""
tls = {}
if TLS_DIR:
    tls = {
        "ssl": True,
        "root_certificates": f"{TLS_DIR}/ca.crt",
        "private_key": f"{TLS_DIR}/tls.key",
        "certificate_chain": f"{TLS_DIR}/tls.crt",
        "channel_args": [("grpc.ssl_target_name_override", os.environ["MODEL_SYNC_TLS_NAME"])],
    }
client = grpcclient.InferenceServerClient(
    os.environ.get("MODEL_SYNC_TRITON", "127.0.0.1:8001"), **tls
)


def versions() -> list[str]:
    model_dir = repository / model
    if not model_dir.is_dir():
        return []
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


synced: list[str] = []
while True:
    heartbeat.touch()
    try:
        present = versions()
        if present and client.is_server_live():
            ready = all(client.is_model_ready(model, v) for v in present)
            if present != synced or not ready:
                # Loading again serves exactly the versions present (version_policy: all);
                # versions already loaded keep answering meanwhile.
                print(f"model-sync: loading {model} versions {present}", flush=True)
                client.load_model(model)
                synced = present
    except Exception as error:  # noqa: BLE001 - keep watching; Triton may be restarting
        print(f"model-sync: {type(error).__name__}: {error}", flush=True)
    time.sleep(interval)
