"""knowledge-base access: restricted KBs and per-user grants

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TENANT = "NULLIF(current_setting('quarry.tenant_id', true), '')"
_ADMITS = f"({_TENANT} IS NULL OR tenant_id = {_TENANT}::uuid)"


def upgrade() -> None:
    with op.batch_alter_table("knowledge_bases") as batch:
        batch.add_column(sa.Column("restricted", sa.Boolean(), server_default="0", nullable=False))
    op.create_table(
        "kb_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kb_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("level", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["kb_id"], ["knowledge_bases.id"],
            name=op.f("fk_kb_grants_kb_id_knowledge_bases"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"],
            name=op.f("fk_kb_grants_tenant_id_tenants"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"],
            name=op.f("fk_kb_grants_user_id_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_grants")),
        sa.UniqueConstraint("kb_id", "user_id", name="uq_kb_grants_kb_user"),
    )  # fmt: skip
    for column in ("kb_id", "tenant_id", "user_id"):
        op.create_index(op.f(f"ix_kb_grants_{column}"), "kb_grants", [column], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE kb_grants ENABLE ROW LEVEL SECURITY")
        op.execute("ALTER TABLE kb_grants FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON kb_grants USING {_ADMITS} WITH CHECK {_ADMITS}"
        )


def downgrade() -> None:
    op.drop_table("kb_grants")
    with op.batch_alter_table("knowledge_bases") as batch:
        batch.drop_column("restricted")
