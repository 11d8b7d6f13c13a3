"""Item pipelines: facts → rows (and, later, verdicts)."""
