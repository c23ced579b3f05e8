"""Benchmarks: each prints JSON and compares with a ceiling measured in the same run."""
