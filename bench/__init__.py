"""flowpods benchmarks: executor overhead against the API-server floor, throughput, memory, tracing cost.

`python -m bench` (or `make bench`) starts its own test environment, measures, prints a table and writes
bench/results/<date>.json. See docs/benchmarks.md.
"""
