"""Shipped defaults: ``default.yaml`` (every setting, commented), examples and chaos schedules.

Installed as ``pattern_tracker.defaults`` so the files travel inside the wheel; code finds them
through this package, never through a source-tree path.
"""
