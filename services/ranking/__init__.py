"""Ranking service: Recommend and Rank, the request path that ties Magpie together."""
