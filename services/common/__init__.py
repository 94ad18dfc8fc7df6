"""Plumbing shared by every Magpie service: settings, errors, gRPC runtime, database."""
