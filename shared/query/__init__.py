"""Querying a KB: routing by complexity, hybrid retrieval under a deadline, cited answers."""
