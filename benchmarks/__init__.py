"""Scripts that print performance figures for docs/performance.md (run with ``python -m``)."""
