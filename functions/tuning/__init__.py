"""The tuning domain: HTTP routes and the Lambda entry point."""
