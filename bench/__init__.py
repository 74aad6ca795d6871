"""The relay's benchmark harness: `python -m bench` (or `make bench`) measures each figure of
docs/benchmarks.md next to its floor and writes the results under bench/results/."""
