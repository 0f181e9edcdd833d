"""Benchmarks run by `autohm bench`: side by side in one process, medians and speed ratios."""
