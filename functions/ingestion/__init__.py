"""The ingestion domain: HTTP routes and the Lambda entry point."""
