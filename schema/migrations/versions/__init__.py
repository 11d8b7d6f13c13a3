"""The revisions, one file each, in order: `NNNN_what.py` with `revision = "NNNN"`.

A package so that it travels with the project in an egg (scrapyd); schema/migrate.py reads
the files through importlib.resources.
"""
