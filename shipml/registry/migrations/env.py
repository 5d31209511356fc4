"""Alembic environment of the catalog: migrate on the caller's connection, or on `sqlalchemy.url` (developer use).

The catalog passes its connection in `config.attributes["connection"]` with a transaction already open (and,
on PostgreSQL, an advisory lock held), so concurrent openers of a fresh catalog upgrade it exactly once and a
failed migration leaves nothing behind (DDL is transactional on both backends).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from shipml.registry.migrations.schema import METADATA

config = context.config
OPTIONS = {"target_metadata": METADATA, "compare_type": True, "render_as_batch": True}  # batch: SQLite ALTERs

if context.is_offline_mode():  # `alembic upgrade --sql`: print the DDL for a DBA to review
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    context.configure(connection=config.attributes["connection"], **OPTIONS)
    with context.begin_transaction():  # joins the caller's open transaction
        context.run_migrations()
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as connection:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
