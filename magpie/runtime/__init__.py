"""What every Magpie process shares: settings, errors, the gRPC server runtime and
interceptors, client channels, PostgreSQL and Redis access, schema migrations, logging."""
