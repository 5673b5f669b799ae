"""Knowledge bases: creation with fixed settings, listing, stats, deletion."""
