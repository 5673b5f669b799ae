"""The workflows domain: HTTP routes and the Lambda entry point."""
