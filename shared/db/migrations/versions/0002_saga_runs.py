"""saga runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 03:50:51.688900
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "saga_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("saga", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kb_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saga_runs")),
    )
    with op.batch_alter_table("saga_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_saga_runs_kb_id"), ["kb_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_saga_runs_status"), ["status"], unique=False)
        batch_op.create_index(
            "ix_saga_runs_tenant_created", ["tenant_id", "created_at"], unique=False
        )

    op.create_table(
        "saga_steps",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["saga_runs.id"],
            name=op.f("fk_saga_steps_run_id_saga_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "name", name=op.f("pk_saga_steps")),
    )


def downgrade() -> None:
    op.drop_table("saga_steps")
    with op.batch_alter_table("saga_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_saga_runs_tenant_created")
        batch_op.drop_index(batch_op.f("ix_saga_runs_status"))
        batch_op.drop_index(batch_op.f("ix_saga_runs_kb_id"))

    op.drop_table("saga_runs")
