"""Workflows: definitions of AI workflows, the engine that runs them, and the tools they use."""
