"""The on-disk layout of one trained model version (a "bundle").

A bundle is a directory `<artifact_dir>/<version>/` written once by training
and never changed afterwards; serving reads it:

- retrieval loads `user_tower.onnx` (in-process ONNX Runtime), `item_vectors.npy`
  (FAISS index), `text_vectors.npy` (content similarity), `covisitation.npz`
  and `vocab.json`, all from the same version, and swaps them atomically;
- ranking loads `vocab.json`, `text_vectors.npy` (diversity) and `covisitation.npz`,
  from which it computes the ranker's candidate features as training did;
- the ranker is copied into the Triton model repository as version `<version>` of the
  ranker model: the file each Triton target serves is named by that target
  (`magpie.modelstore.triton_repo.TARGETS`): `ranker.int8.onnx` for the CPU target
  (ONNX Runtime in the Python backend), `ranker.onnx` (FP32) for the GPU target, whose
  ONNX Runtime backend builds TensorRT FP16 engines from it;
- `metadata.json` records how it was trained and its offline metrics.

Model input/output names are in `magpie.contract.signature`. Every file a bundle holds
is in ``REQUIRED_FILES`` and has a reader; nothing else is written.
"""

from __future__ import annotations

__all__ = [
    "COVISITATION",
    "ITEM_VECTORS",
    "METADATA",
    "RANKER_FP32",
    "RANKER_INT8",
    "REQUIRED_FILES",
    "TEXT_VECTORS",
    "USER_TOWER",
    "VOCAB",
]

RANKER_FP32 = "ranker.onnx"
RANKER_INT8 = "ranker.int8.onnx"
USER_TOWER = "user_tower.onnx"
ITEM_VECTORS = "item_vectors.npy"
"""float32 [vocab, dim]: retrieval item vectors; row i is vocabulary index i."""
TEXT_VECTORS = "text_vectors.npy"
"""float32 [vocab, text_dim]: L2-normalised text embeddings, same rows."""
COVISITATION = "covisitation.npz"
"""Sparse top neighbours per item: arrays `indptr`, `indices`, `scores` (CSR rows), as
written and read by `magpie.contract.covisitation.Covisitation`."""
VOCAB = "vocab.json"
"""{"item_ids": [...]}: product id of each vocabulary index from FIRST_ITEM_INDEX on."""
METADATA = "metadata.json"

REQUIRED_FILES = (
    RANKER_FP32,
    RANKER_INT8,
    USER_TOWER,
    ITEM_VECTORS,
    TEXT_VECTORS,
    COVISITATION,
    VOCAB,
    METADATA,
)
