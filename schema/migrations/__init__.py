"""Alembic revisions of the mxcensus schema, run by schema/migrate.py (no alembic.ini).

Why: one database keeps many runs side by side for years, so a newer mxcensus must upgrade
the database an older one made, in place, never recreate it. 0001 is the schema as mxcensus
made it before migrations (commit c8aa822); every later change of schema/models.py or
schema/views.py is a revision here.

Adding a revision:

1. copy the newest file of `versions/` to `versions/NNNN_what.py` (the next number), set
   `revision = "NNNN"` and `down_revision` to the previous one;
2. write `upgrade()` with `alembic.op` (`op.create_table`, `op.add_column`, …) and, for
   views, `schema.migrations.ops.create_views` / `replace_views` with the view SQL written
   out in the revision itself: a revision must create the same thing forever, whatever
   schema/views.py says later;
3. change schema/models.py (and schema/views.py) to match; tests/test_migrations.py fails
   while the migrated database and the models disagree.

Revisions only go forward (there are no downgrades): back a database up before upgrading it.
"""
