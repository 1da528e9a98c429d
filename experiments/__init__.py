"""Benchmarks and studies: scripts run as `python -m experiments.NAME` from the repository root."""
