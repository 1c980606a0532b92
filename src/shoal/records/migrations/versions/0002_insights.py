"""Conversation insights: analyses and online topic clusters.

Revision ID: 0002_insights
Revises: 0001
Create Date: 2025-01-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002_insights"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies of the column types at this revision
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Key = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "insights",
        sa.Column("conversation_id", Key, primary_key=True),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("author", sa.String, nullable=True),
        sa.Column("raw_data", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("sentiment_score", sa.Float, nullable=True),
        sa.Column("sentiment", sa.String(8), nullable=True),
        sa.Column("confidence", sa.Float, nullable=True),
        sa.Column("cluster", sa.String, nullable=True),
        sa.Column("cluster_id", sa.Integer, nullable=True),
        sa.Column("clusters", Json, nullable=True),
        sa.Column("reasoning", sa.Text, nullable=True),
        sa.Column("analyzer", sa.String, nullable=True),
        sa.Column("analyzed_at", Timestamp, nullable=True),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("ix_insights_status_ts", "insights", ["status", "ts"])
    op.create_index("ix_insights_ts", "insights", ["ts", "conversation_id"])
    op.create_index("ix_insights_author_ts", "insights", ["author", "ts"])
    op.create_index("ix_insights_cluster_ts", "insights", ["cluster", "ts"])
    op.create_table(
        "insight_clusters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("label", sa.String, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("seen", sa.Integer, nullable=False),
        sa.Column("cohesion", sa.Float, nullable=False),
        sa.Column("top_terms", Json, nullable=False),
        sa.Column("examples", Json, nullable=False),
        sa.Column("terms", Json, nullable=False),
        sa.Column("total", sa.LargeBinary, nullable=False),
        sa.Column("reservoir", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("insight_clusters")
    op.drop_table("insights")
