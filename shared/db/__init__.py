"""Relational storage: the schema, the async engine and migrations."""
