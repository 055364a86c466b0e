"""Reproducible benchmarks; each module is runnable with ``python -m benchmarks.NAME``."""
