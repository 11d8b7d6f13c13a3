"""Reports of mxcensus runs: the two STARTTLS studies' tables and charts, a comparison across
labels and the change between two runs, as terminal text, CSV, JSON and a self-contained
HTML page (see crawler/commands/report.py)."""
