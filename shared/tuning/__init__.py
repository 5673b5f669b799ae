"""The router's threshold tuner: re-fits the complexity thresholds to the logged queries."""
