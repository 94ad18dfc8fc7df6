"""Test certificates made with the openssl command: a CA and leaves it signs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path


class TestCA:
    """A throwaway certificate authority in `directory`."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.cert = directory / "ca.crt"
        self._key = directory / "ca.key"
        _openssl(
            "req", "-x509", *_EC, "-keyout", str(self._key), "-out", str(self.cert),
            "-days", "2", "-subj", "/CN=magpie-test-ca", cwd=directory,
        )  # fmt: skip

    def issue(self, name: str, common_name: str | None = None) -> Leaf:
        """A leaf for localhost and 127.0.0.1, for servers and clients, laid out as Kubernetes
        mounts a Secret (``<name>/tls.crt`` -> ``..data/tls.crt``, ``..data`` -> a directory
        per version). Issuing the same `name` again renews it: the new version is swapped in
        at once by renaming the ``..data`` link, as the kubelet does."""
        mount = self.directory / name
        version = mount / f"..{common_name or name}-{len(list(mount.glob('..*-*')))}"
        version.mkdir(parents=True)
        ext = version / "ext"
        ext.write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        subject = f"/CN={common_name or name}"
        _openssl("req", *_EC, "-keyout", "tls.key", "-out", "csr", "-subj", subject, cwd=version)
        _openssl(
            "x509", "-req", "-in", "csr", "-CA", str(self.cert), "-CAkey", str(self._key),
            "-CAcreateserial", "-out", "tls.crt", "-days", "1", "-extfile", "ext", cwd=version,
        )  # fmt: skip
        link = mount / "..data_tmp"
        link.symlink_to(version.name)
        link.replace(mount / "..data")
        leaf = Leaf(mount / "tls.crt", mount / "tls.key")
        for path in (leaf.cert, leaf.key):
            if not path.is_symlink():
                path.symlink_to(f"..data/{path.name}")
        return leaf
