"""The results harness: every figure of README.md and BENCHMARKS.md that is marked
`<!-- results:NAME -->` is written by `python -m benchmarks.tables NAME` (see tables.py)."""
