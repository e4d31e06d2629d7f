"""The suite's shared library: settings, logging, telemetry, bus, database, gRPC and health helpers."""
