"""Sagas: ordered steps, each with an optional compensation, run with persisted state.

One definition serves both runners: in-process locally, Step Functions in the cloud (each step is
the same function, invoked as a task).
"""
