"""Benchmarks: python -m bench (figures go to docs/benchmarks.md)."""
