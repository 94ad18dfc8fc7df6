"""The ONNX signatures of the exported models, in one place for the Triton config generator.

Ranker (``ranker.onnx``, ``ranker.int8.onnx``):

=================  =======  ===================  ==============================================
name               dtype    shape                meaning
=================  =======  ===================  ==============================================
``history_ids``    int64    [batch, HISTORY_LEN]  the user's recent items, oldest first, left-
                                                  padded with ``PAD_INDEX``
``candidate_ids``  int64    [batch, candidates]  items to score (any number, ~500 in serving)
``context``        float32  [batch, CONTEXT_DIM]  request context, layout in ``CONTEXT_FEATURES``
``scores``         float32  [batch, candidates]  output: higher is better, comparable per row
=================  =======  ===================  ==============================================

and ``candidate_features``, float32 [batch, candidates, CANDIDATE_FEATURE_DIM]: signals per
candidate that the ids alone do not carry, layout in ``CANDIDATE_FEATURE_NAMES``, computed
by :meth:`magpie.contract.covisitation.Covisitation.features` from the bundle's
co-visitation lists (the same function in training, evaluation and serving).

User tower of retrieval (``user_tower.onnx``): input ``history_ids`` as above but
[batch, USER_TOWER_MIN_HISTORY..USER_TOWER_HISTORY_LEN] (any length in that range,
left-padded), output
``user_vectors`` float32 [batch, dim]; the item matrix for the FAISS index (inner
product) is written beside it as ``item_vectors.npy`` (float32 [vocab, dim]).

Item ids are indices into the vocabulary saved with the model (``vocab.json``): index
``PAD_INDEX`` pads, ``OOV_INDEX`` stands for any item unknown to the baked tables (it
scores with a learned "unknown item" vector). A brand-new item gets a real vector without
retraining by re-exporting: its row is computed from its text embedding and category.
In the FP16 model, inputs and outputs keep the dtypes above; only the inside is half.
"""

from __future__ import annotations

__all__ = [
    "CANDIDATE_FEATURES",
    "CANDIDATE_FEATURE_DIM",
    "CANDIDATE_FEATURE_NAMES",
    "CANDIDATE_IDS",
    "CONTEXT",
    "CONTEXT_DIM",
    "CONTEXT_FEATURES",
    "DEVICES",
    "FIRST_ITEM_INDEX",
    "HISTORY_IDS",
    "HISTORY_LEN",
    "OOV_INDEX",
    "PAD_INDEX",
    "SCORES",
    "USER_TOWER_HISTORY_LEN",
    "USER_TOWER_MIN_HISTORY",
    "USER_VECTORS",
]

HISTORY_IDS = "history_ids"
CANDIDATE_IDS = "candidate_ids"
CONTEXT = "context"
CANDIDATE_FEATURES = "candidate_features"
SCORES = "scores"
USER_VECTORS = "user_vectors"

PAD_INDEX = 0
OOV_INDEX = 1
FIRST_ITEM_INDEX = 2
"""Indices below this are reserved (``PAD_INDEX``, ``OOV_INDEX``)."""
HISTORY_LEN = 50
"""History length of the exported ranker (the most recent items, left-padded)."""
USER_TOWER_HISTORY_LEN = 200
"""History length of the exported retrieval user tower."""
USER_TOWER_MIN_HISTORY = 2
"""Shortest history the exported user tower accepts (a shorter one is left-padded to it)."""

DEVICES = ("web", "mobile", "app")
CONTEXT_FEATURES = (
    "hour_sin",
    "hour_cos",
    "weekday_sin",
    "weekday_cos",
    "log1p_hours_since_last_event",
    *(f"device_{name}" for name in DEVICES),
)
CONTEXT_DIM = len(CONTEXT_FEATURES)

CANDIDATE_FEATURE_NAMES = ("log1p_covisitation_recent", "log1p_covisitation_newest")
CANDIDATE_FEATURE_DIM = len(CANDIDATE_FEATURE_NAMES)
