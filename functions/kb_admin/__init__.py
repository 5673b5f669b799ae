"""The kb_admin domain: HTTP routes and the Lambda entry point."""
