"""Retraining: runs that turn stored feedback into a gated, promoted model version.

A run (:mod:`.runs`) advances one stage at a time (:mod:`.pipeline`, :mod:`.stages`):
snapshot the events, embed changed products, train, judge the candidate on a
time-forward holdout against the champion and the baselines (:mod:`.gate`), publish it
beside the champion and switch. The Celery worker (``services/worker``) drives the stages;
the training stage may run as a Kubernetes Job (:mod:`.jobs`).
"""
