"""Durable state shared by every process of a data directory: spool, dead letters, circuit, ingest."""
