"""Benchmarks: each prints a table; none is a test. ``python3 dev.py bench NAME``."""
