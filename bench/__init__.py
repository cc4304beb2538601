"""Benchmarks (not tests): throughput, scaling with data size, peak memory."""
