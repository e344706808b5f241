"""Benchmarks for gpuctl's speed targets (issue 8). Run them all with `make bench`."""
