"""The stand-in Phase 4 service (`serve`), its chaos faults; its lineage store lives in sinks."""
