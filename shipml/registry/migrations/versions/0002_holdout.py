"""Each model's frozen evaluation set: a nullable `holdout` column on models (the holdout's digest in the store).

Revision ID: 0002
Revises: 0001

Null until the model's first release stores its holdout; set once, never changed (`Catalog.set_holdout`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("models", sa.Column("holdout", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("models", "holdout")  # SQLite >= 3.35 drops a column in place (no table rebuild)
