"""Benchmarks: `make bench` (python -m bench). Each target is a ratio against a baseline
measured in the same run; results are printed and written to bench/results/."""
