"""The query domain: HTTP routes and the Lambda entry point."""
