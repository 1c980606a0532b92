"""Collections and records.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies of the column types at this revision (schema.py may move on)
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Key = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("name", Key, primary_key=True),
        sa.Column("dim", sa.Integer, nullable=False),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("vector_name", sa.String, nullable=False),
        sa.Column("shadow_vector_name", sa.String, nullable=True),
        sa.Column("shadow_model", sa.String, nullable=True),
        sa.Column("config", Json, nullable=False),
    )
    op.create_table(
        "records",
        sa.Column(
            "collection",
            Key,
            sa.ForeignKey("collections.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("id", Key, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("payload", Json, nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("embedding_model", sa.String, nullable=True),
        sa.Column("embedding_dim", sa.Integer, nullable=True),
        sa.Column("embedded_at", Timestamp, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_records_collection_status", "records", ["collection", "status"])
    op.create_index("ix_records_collection_ts", "records", ["collection", "ts"])
    op.create_index("ix_records_collection_embedding_model", "records", ["collection", "embedding_model"])


def downgrade() -> None:
    op.drop_table("records")
    op.drop_table("collections")
