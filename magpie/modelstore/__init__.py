"""Trained model bundles, the model registry in PostgreSQL, and publishing to Triton."""
