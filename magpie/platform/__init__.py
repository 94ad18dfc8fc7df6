"""Tooling around the services: the `magpie` command, the local platform (`magpie up`)
and the demo world it loads."""
