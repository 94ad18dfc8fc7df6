"""Magpie, the library: generated protobuf and gRPC code (``magpie.v1``), the runtime every
process shares, the model contract, learning, data sets, the model store and the platform
tooling. The deployable processes live under ``services/`` and depend on this package,
never the other way round."""
