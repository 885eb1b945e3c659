"""Row-level security for tenant-owned tables, used by each app's migrations."""

from __future__ import annotations

from django.db import migrations

_TENANT_MATCH = (
    "(tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint"
    " OR current_setting('app.rls_bypass', true) = 'on')"
)


def enable_rls(table: str) -> migrations.RunSQL:
    """FORCE makes the policy apply to the table's owner too (the application's role)."""
    return migrations.RunSQL(
        sql=[
            f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
            f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY',
            f'CREATE POLICY tenant_isolation ON "{table}" USING {_TENANT_MATCH} '
            f"WITH CHECK {_TENANT_MATCH}",
        ],
        reverse_sql=[
            f'DROP POLICY IF EXISTS tenant_isolation ON "{table}"',
            f'ALTER TABLE "{table}" NO FORCE ROW LEVEL SECURITY',
            f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
        ],
    )
