"""Repository tooling: protobuf generation and checks, benchmarks (``tools.bench``)."""
