"""tuning configs

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 04:21:00.080847
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuning_configs",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("fast_threshold", sa.Float(), nullable=False),
        sa.Column("deep_threshold", sa.Float(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_tuning_configs")),
    )


def downgrade() -> None:
    op.drop_table("tuning_configs")
