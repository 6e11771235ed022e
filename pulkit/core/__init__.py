"""Plumbing: configuration, paths, atomic I/O, provenance, output names and results files."""
