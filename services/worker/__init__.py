"""Retraining worker: Celery worker and beat over the retraining library (magpie.retraining)."""
