"""Magpie's learning core: text features, retrieval and ranking models, baselines,
the evaluation protocol and ONNX export.

Entry points for other code: :func:`services.learning.train.train_pipeline`,
:func:`services.learning.evaluate.evaluate` and :mod:`services.learning.export`.
Modules import only numpy and torch at load time so they run where only those exist.
"""
