"""Benchmarks: the framework against the raw client libraries, in the same run.

Each module runs as ``python -m bench.<name>`` and prints a table with absolute figures and
the ratio framework / raw. Ratios within one run are what count: the machines are noisy.
"""
