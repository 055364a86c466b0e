"""Core: standard library and lmdb only (the hook's import budget): the store, identity, capture, redaction, counters."""
