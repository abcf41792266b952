"""Training: the strict config a run records, the run directory, backups, strategies, summaries."""
