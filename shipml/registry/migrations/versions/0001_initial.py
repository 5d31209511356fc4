"""The first catalog schema: models, versions, aliases, and the append-only event log.

Revision ID: 0001
Revises: (none)

Frozen: the tables are spelled out here rather than taken from `catalog.METADATA`, so this revision builds the
same schema forever; later changes are later revisions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
KINDS = "'register', 'gate', 'release', 'promote', 'rollback', 'force', 'canary'"

PG_APPEND_ONLY = """
CREATE FUNCTION shipml_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the catalog event log is append-only: % on events refused', TG_OP; END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION shipml_events_append_only();
"""
SQLITE_APPEND_ONLY = [
    f"CREATE TRIGGER events_no_{op_} BEFORE {op_.upper()} ON events "
    f"BEGIN SELECT RAISE(ABORT, 'the catalog event log is append-only: {op_.upper()} on events refused'); END"
    for op_ in ("update", "delete")
]


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("created", TS, nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("signature", sa.JSON, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("provenance", sa.JSON, nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
        sa.UniqueConstraint("model_id", "digest", name="uq_versions_model_digest"),
    )
    op.create_table(
        "aliases",
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), primary_key=True),
        sa.Column("name", sa.String(16), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("weight", sa.Integer, nullable=True),
        sa.Column("updated", TS, nullable=False),
        sa.ForeignKeyConstraint(["model_id", "version"], ["versions.model_id", "versions.number"],
                                name="fk_aliases_version"),
        sa.CheckConstraint("name IN ('production', 'canary')", name="ck_aliases_name"),
        sa.CheckConstraint("(name = 'canary' AND weight BETWEEN 0 AND 100) OR (name <> 'canary' AND weight IS NULL)",
                           name="ck_aliases_weight"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_id", sa.Integer, sa.ForeignKey("models.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("who", sa.String(200), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("why", sa.Text, nullable=True),
        sa.Column("details", sa.JSON, nullable=False),
        sa.CheckConstraint(f"kind IN ({KINDS})", name="ck_events_kind"),
    )
    op.create_index("ix_events_model", "events", ["model_id", "id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_APPEND_ONLY)
    else:
        for statement in SQLITE_APPEND_ONLY:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER events_append_only ON events")
        op.execute("DROP FUNCTION shipml_events_append_only()")
    for table in ("events", "aliases", "versions", "models"):
        op.drop_table(table)  # SQLite drops the table's triggers with it
