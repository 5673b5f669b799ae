"""Lambda handler packages, one per domain, plus the local combined app and the CLI."""
