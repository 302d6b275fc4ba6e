"""Benchmarks (not collected by pytest): run them as scripts, e.g. ``python bench/bench_api.py``."""
