"""Benchmark implementations behind ``python -m pulkit.bench``."""
