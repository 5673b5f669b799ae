"""Ingestion: uploads into documents (``extraction``), documents into chunks (``chunking``)."""
