"""The catalog's current schema (SQLAlchemy Core tables), for queries and for checking the migrations.

The migrations in `versions/` create the tables; this is what they must add up to (a test compares a migrated
database with `METADATA`, and `alembic revision --autogenerate` diffs against it). Changing a table here means
adding a revision there. See `shipml.registry.catalog` for what each table is for.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["ALIASES", "EVENT_KINDS", "METADATA", "aliases", "events", "models", "versions"]

ALIASES = ("production", "canary")
EVENT_KINDS = ("register", "gate", "release", "promote", "rollback", "force", "canary")
METADATA = sa.MetaData()
_TS = sa.DateTime(timezone=True)
models = sa.Table(
    "models", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("created", _TS, nullable=False),
    sa.Column("holdout", sa.String(64), nullable=True),  # digest of its frozen evaluation set (0002_holdout)
)
versions = sa.Table(
    "versions", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("signature", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("provenance", sa.JSON, nullable=False),
    sa.Column("created", _TS, nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("note", sa.Text, nullable=False),
    sa.UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
    sa.UniqueConstraint("model_id", "digest", name="uq_versions_model_digest"),
)
aliases = sa.Table(
    "aliases", METADATA,
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
    sa.Column("name", sa.String(16), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("weight", sa.Integer, nullable=True),
    sa.Column("updated", _TS, nullable=False),
    sa.ForeignKeyConstraint(["model_id", "version"], ["versions.model_id", "versions.number"],
                            name="fk_aliases_version"),
    sa.CheckConstraint("name IN ('production', 'canary')", name="ck_aliases_name"),
    sa.CheckConstraint("(name = 'canary' AND weight BETWEEN 0 AND 100) OR (name <> 'canary' AND weight IS NULL)",
                       name="ck_aliases_weight"),
)
events = sa.Table(
    "events", METADATA,
    sa.Column("id", sa.Integer, primary_key=True),  # the order things happened in
    sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("who", sa.String(200), nullable=False),
    sa.Column("at", _TS, nullable=False),
    sa.Column("why", sa.Text, nullable=True),
    sa.Column("details", sa.JSON, nullable=False),
    sa.CheckConstraint("kind IN ('register', 'gate', 'release', 'promote', 'rollback', 'force', 'canary')",
                       name="ck_events_kind"),
    sa.Index("ix_events_model", "model_id", "id"),
)
