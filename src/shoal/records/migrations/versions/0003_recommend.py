"""Recommendation profiles, applied event ids (idempotency) and trending counts.

Revision ID: 0003_recommend
Revises: 0002_insights
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_recommend"
down_revision: str | Sequence[str] | None = "0002_insights"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# frozen copies of the column types at this revision
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Key = sa.String().with_variant(sa.String(collation="C"), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "recommend_profiles",
        sa.Column("user_id", Key, primary_key=True),
        sa.Column("vector", sa.LargeBinary, nullable=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("seen", Json, nullable=False),
        sa.Column("recent", Json, nullable=False),
        sa.Column("counters", Json, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_table(
        "recommend_applied",
        sa.Column("event_id", Key, primary_key=True),
        sa.Column("user_id", Key, nullable=False),
        sa.Column("applied_at", sa.Float, nullable=False),
    )
    op.create_index("ix_recommend_applied_applied_at", "recommend_applied", ["applied_at"])
    op.create_table(
        "recommend_trending",
        sa.Column("item_id", Key, primary_key=True),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("rank", sa.Float, nullable=False),
    )
    op.create_index("ix_recommend_trending_rank", "recommend_trending", ["rank"])


def downgrade() -> None:
    op.drop_table("recommend_trending")
    op.drop_table("recommend_applied")
    op.drop_table("recommend_profiles")
