"""Benchmarks: `vidrec bench ...` prints JSON and writes PNG plots beside it.

Speed and memory targets live here, not in timed tests. Ratios are measured
within one run, because shared machines are noisy.
"""
