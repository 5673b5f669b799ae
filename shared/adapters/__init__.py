"""Adapters: one module per technology behind a port (embedded default beside the real one)."""
