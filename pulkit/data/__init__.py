"""Data: sequences and readers, synthetic videos, crops, pair datasets."""
