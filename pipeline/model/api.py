"""The Phase 4 API's path prefix, defined once for the client (sinks.http) and the stand-in (serve)."""

PREFIX = "/api/pattern-traceability"
