"""User profile service: static attributes plus behaviour-derived features."""
