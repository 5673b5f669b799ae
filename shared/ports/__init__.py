"""Ports: the small interfaces domain code depends on; ``shared.adapters`` implements them."""
