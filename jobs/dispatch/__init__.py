"""The daemon's work: sending, and following what became of what was sent."""
