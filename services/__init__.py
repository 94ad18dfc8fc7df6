"""Magpie: product recommendation services, models and tools."""
