"""Publish a bundle's ranker as a version of the Triton model, without dropping a request.

1. The model directory's ``config.pbtxt`` says which target it serves
   (:func:`~magpie.modelstore.triton_repo.target_of`), and the target which bundle file
   (CPU: the INT8 ranker for the Python backend; GPU: the FP32 export its ONNX Runtime
   backend builds TensorRT engines from). That file is checked in ONNX Runtime (a
   starting Triton exits when its highest version fails to load, so nothing unsound may
   land).
2. It is staged as ``model.onnx`` (with ``model.py`` for the Python backend) in a
   temporary directory beside the repository (same file system, never scanned by Triton)
   and renamed into ``<repository>/<model>/<version>`` in one step.
3. Version directories other than ``version`` and those in ``keep`` (the versions the
   registry's aliases name) are moved out: the configuration serves every version
   present (``version_policy: all``). Their bundles stay in the artifact store.
4. With a server address, ``load_model`` (explicit model control) loads the new version
   while the kept ones keep answering; a failed load takes the new directory out again
   and raises, and what was served keeps serving.
"""

from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Collection
from pathlib import Path

from magpie.contract.signature import FIRST_ITEM_INDEX
from magpie.modelstore.bundle import VOCAB
from magpie.modelstore.triton_repo import (
    CONFIG_FILE,
    MODEL_FILE,
    MODEL_PY,
    TARGETS,
    read_config,
    target_of,
)
from magpie.modelstore.validate import InvalidBundle, check_ranker
from magpie.runtime.errors import FailedPrecondition, Unavailable

__all__ = ["publish", "published_versions"]

logger = logging.getLogger(__name__)


def published_versions(model_dir: Path) -> list[int]:
    """Version directories present under ``model_dir``, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def _remove(directory: Path, repository: Path) -> None:
    """Take ``directory`` out of Triton's view atomically, then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=".trash-", dir=repository.parent))
    directory.rename(trash / directory.name)
    shutil.rmtree(trash, ignore_errors=True)


def _stage(ranker: Path, model_dir: Path, version: int, repository: Path) -> None:
    """``ranker`` as ``model.onnx`` (and the model directory's ``model.py``, if it has one)
    into ``<model_dir>/<version>``, renamed into place in one step."""
    target = model_dir / str(version)
    staging = Path(tempfile.mkdtemp(prefix=f".publish-{version}-", dir=repository.parent))
    try:
        shutil.copyfile(ranker, staging / MODEL_FILE)
        files = [MODEL_FILE]
        if (model_dir / MODEL_PY).is_file():
            shutil.copyfile(model_dir / MODEL_PY, staging / MODEL_PY)
            files.append(MODEL_PY)
        for name in files:
            with (staging / name).open("rb") as handle:
                os.fsync(handle.fileno())
        staging.chmod(0o755)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _load(triton_addr: str, model: str, version: int, timeout: float) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(triton_addr)
    try:
        client.load_model(model, client_timeout=timeout)
        if not client.is_model_ready(model, str(version)):
            raise Unavailable(f"Triton did not make {model} version {version} ready")
    except InferenceServerException as error:
        raise Unavailable(f"Triton failed to load {model} version {version}: {error}") from error
    finally:
        client.close()


def _served_file(model_dir: Path) -> str:
    """The bundle file that the target of ``model_dir``'s configuration serves."""
    config = model_dir / CONFIG_FILE
    if not config.is_file():
        raise FailedPrecondition(f"{model_dir} has no {CONFIG_FILE}")
    try:
        target = target_of(read_config(config))
    except ValueError as error:
        raise FailedPrecondition(str(error)) from error
    if target == "cpu" and not (model_dir / MODEL_PY).is_file():
        raise FailedPrecondition(f"{model_dir} serves the Python backend but has no {MODEL_PY}")
    return TARGETS[target].bundle_file


def publish(
    bundle: Path,
    version: int,
    repository: Path,
    model: str,
    triton_addr: str | None = None,
    keep: Collection[int] = (),
    timeout: float = 120.0,
) -> Path:
    """Make ``bundle``'s ranker version ``version`` of ``model``, served beside the versions
    in ``keep`` (and, given ``triton_addr``, loaded by that server). Returns the version
    directory.

    Raises ``InvalidBundle``
    before anything lands, ``FailedPrecondition`` if the model directory lacks its
    configuration, ``Unavailable`` if Triton cannot load the version (it is taken out).
    """
    model_dir = repository / model
    ranker = bundle / _served_file(model_dir)
    try:
        vocab_size = len(json.loads((bundle / VOCAB).read_text())["item_ids"]) + FIRST_ITEM_INDEX
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidBundle(bundle, [f"{VOCAB}: {error}"]) from error
    problems = check_ranker(ranker, vocab_size)
    if problems:
        raise InvalidBundle(bundle, problems)
    target = model_dir / str(version)
    current = target / MODEL_FILE
    landed = not current.is_file() or not filecmp.cmp(current, ranker, shallow=False)
    if landed:
        if target.exists():  # left by another database's registry: not this bundle
            _remove(target, repository)
        _stage(ranker, model_dir, version, repository)
    for stale in (v for v in published_versions(model_dir) if v != version and v not in keep):
        _remove(model_dir / str(stale), repository)
    if triton_addr is not None:
        try:
            _load(triton_addr, model, version, timeout)
        except Unavailable:
            if landed:
                _remove(target, repository)
            raise
    logger.info("published %s version %s from %s", model, version, bundle)
    return target
