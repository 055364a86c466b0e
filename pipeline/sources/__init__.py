"""Sources: they only produce PatternEvents and know nothing of delivery."""
