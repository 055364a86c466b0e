"""pattern-tracker: assembly and runtime of the pattern pipeline.

Keep this module import-free: the hook path imports ``pipeline.*`` modules one by one and
must not pay for aiohttp, reactivex or OpenTelemetry.
"""

__version__ = "0.1.0"
