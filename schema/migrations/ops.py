"""Steps revisions share: views made and remade without touching a user's own objects.

Why: users build their own views and queries on ours (the views are the public contract).
On PostgreSQL a view is bound to the views it reads, so `DROP VIEW … CASCADE` would silently
drop a user's view, and a plain `DROP VIEW` fails while one exists. A changed view is
therefore replaced in place with `CREATE OR REPLACE VIEW`, which PostgreSQL accepts when the
new definition keeps the old columns (names and types, in order) and only appends columns.
A change that is not append-only fails the whole upgrade, in its transaction, with
PostgreSQL's message: such a revision needs its own steps, never CASCADE. SQLite binds
nothing (a view is re-read when queried), so there a view is dropped and created again.

Views are given as `{name: select_sql}` in dependency order (a view after those it reads).
"""

from __future__ import annotations

from collections.abc import Mapping

from alembic import op
from sqlalchemy import inspect


def create_views(views: Mapping[str, str]) -> None:
    """Create new views."""
    for name, sql in views.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def replace_views(views: Mapping[str, str]) -> None:
    """Give existing views (or new ones) new definitions; objects reading them survive."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name, sql in views.items():
        if postgresql:
            op.execute(f"CREATE OR REPLACE VIEW {name} AS {sql}")
        else:
            op.execute(f"DROP VIEW IF EXISTS {name}")
            op.execute(f"CREATE VIEW {name} AS {sql}")


def has_table(name: str) -> bool:
    return inspect(op.get_bind()).has_table(name)


def has_column(table: str, column: str) -> bool:
    return any(c["name"] == column for c in inspect(op.get_bind()).get_columns(table))
