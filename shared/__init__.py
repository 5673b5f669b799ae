"""Quarry's domain code: every Lambda function, the GPU endpoint and the CLI import from here."""
