"""Logging, metrics and timing: one facade each, the same calls locally and in Lambda."""
