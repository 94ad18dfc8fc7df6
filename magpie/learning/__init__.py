"""Magpie's learning core: text features, retrieval and ranking models, baselines,
the evaluation protocol and ONNX export.

Entry points for other code (retraining workers, serving tooling):

* :func:`magpie.learning.train.train_pipeline` -> ``TrainedArtifacts`` (vocabulary,
  retrieval model, ranker), then :func:`magpie.learning.export.export_artifacts` writes
  the ONNX models (FP32, INT8, FP16), ``item_vectors.npy`` and ``vocab.json``.
* :func:`magpie.learning.evaluate.evaluate` runs every ``magpie eval`` row.
* :meth:`RetrievalModel.item_matrix` / :meth:`RetrievalModel.user_vectors` give the
  vectors of the FAISS inner-product index and of its queries.
* :mod:`magpie.contract.signature` names the ONNX inputs and outputs.

Modules import only numpy and torch at load time (sentence-transformers, onnx and
onnxruntime are imported where used), so they run where only those exist.
"""
