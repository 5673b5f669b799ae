"""row-level security on tenant tables; append-only audit log (PostgreSQL only)

Every table holding a tenant's rows gets a policy admitting a row only when its ``tenant_id``
equals the transaction's ``quarry.tenant_id`` setting (published by ``shared.db.engine`` for
requests acting for a tenant). Without the setting (system work: migrations, sagas, tuning,
sign-in lookups) every row is admitted. The repositories filter by tenant themselves; this is
the second line of defence against a query that forgets to. ``FORCE`` applies the policies to
the tables' owner too; only superusers and roles with BYPASSRLS skip them, so the application
must not connect as one (the RDS master user is neither).

The audit log also refuses UPDATE and DELETE: it is append-only.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "users",
    "knowledge_bases",
    "documents",
    "chunks",
    "query_events",
    "audit_log",
    "saga_runs",
    "refresh_tokens",
    "api_keys",
    "provider_secrets",
    "workflows",
    "workflow_runs",
    "workflow_node_runs",
)
POLICY = "tenant_isolation"
_TENANT = "NULLIF(current_setting('quarry.tenant_id', true), '')"
_ADMITS = f"({_TENANT} IS NULL OR tenant_id = {_TENANT}::uuid)"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {POLICY} ON {table} USING {_ADMITS} WITH CHECK {_ADMITS}")
    op.execute(
        """
        CREATE FUNCTION quarry_audit_log_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION quarry_audit_log_append_only()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
    op.execute("DROP FUNCTION IF EXISTS quarry_audit_log_append_only()")
    for table in reversed(TENANT_TABLES):
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
