"""Benchmarks (``make bench``). They report ratios measured within one run, never absolute targets:
the machines are shared and noisy, so only comparisons made side by side mean anything."""
