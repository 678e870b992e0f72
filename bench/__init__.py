"""Benchmarks and end-to-end checks against a running service."""
