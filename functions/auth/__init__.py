"""The auth domain: HTTP routes and the Lambda entry point."""
