"""Row-level security for tenant-owned tables, used by each app's migrations.

A row is visible when its tenant is the session's `app.tenant_id`, or when the session holds
the bypass key: `app.rls_bypass` must hash to the value built into `mf_rls_bypass_granted()`,
a function the database's superuser creates (embedded_db bootstrap, docker/initdb.sql) and
the application's role cannot replace. The key lives in the application's settings, never in
the database, so a statement injected into a tenant's session cannot turn the bypass on: a
setting any session may change is no wall, a secret it does not know is.
"""

from __future__ import annotations

import hashlib

# No Django import at module level: the embedded database's bootstrap uses this module while
# the settings are still loading.

BYPASS_FUNCTION = "public.mf_rls_bypass_granted"
# The sub-select makes the key check an init plan: evaluated once per statement, not per row.
_TENANT_MATCH = (
    "(tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::bigint"
    f" OR (SELECT {BYPASS_FUNCTION}()))"
)


def bypass_function_sql(key: str) -> str:
    """The function the superuser creates: true only when the session's `app.rls_bypass`
    is `key`. Only the key's sha256 is stored in the database."""
    if len(key) < 32:
        raise ValueError("the row-level security bypass key must be at least 32 characters")
    digest = hashlib.sha256(key.encode()).hexdigest()
    return (
        f"CREATE OR REPLACE FUNCTION {BYPASS_FUNCTION}() RETURNS boolean"
        " LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog AS $fn$"
        " SELECT encode(sha256(convert_to(coalesce(current_setting('app.rls_bypass', true),"
        f" ''), 'UTF8')), 'hex') = '{digest}' $fn$"
    )


def enable_rls(table: str):
    """FORCE makes the policy apply to the table's owner too (the application's role)."""
    from django.db import migrations

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


def require_bypass_key():
    """Existing databases: every tenant_isolation policy made before the bypass needed the
    key (it accepted `app.rls_bypass = 'on'` from anyone) now checks it."""
    from django.db import migrations

    return migrations.RunSQL(
        sql=f"""
        DO $do$
        DECLARE policy record;
        BEGIN
          FOR policy IN SELECT schemaname, tablename FROM pg_policies
                        WHERE policyname = 'tenant_isolation' LOOP
            EXECUTE format('ALTER POLICY tenant_isolation ON %I.%I USING %s WITH CHECK %s',
                           policy.schemaname, policy.tablename,
                           $match${_TENANT_MATCH}$match$, $match${_TENANT_MATCH}$match$);
          END LOOP;
        END
        $do$""",
        reverse_sql=migrations.RunSQL.noop,
    )
