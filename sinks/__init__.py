"""Sinks: take a batch of PatternEvents and return one Outcome per event, in order."""
