"""The second wall holds against the application's own role: a session in one tenant's scope
that tries every way to turn the bypass on (as an injected statement would) still sees that
tenant only. Only the key, which the database does not hold, opens it."""

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import database_url_for_subprocess

pytestmark = pytest.mark.django_db(transaction=True)


def tenants_seen(conn) -> set[int]:
    return {row[0] for row in conn.execute("SELECT DISTINCT tenant_id FROM tenants_apikey")}


@pytest.fixture
def app_session(tenant_a, tenant_b):
    """A new connection as the application's role, scoped to tenant A (committed rows)."""
    with psycopg.connect(database_url_for_subprocess(), autocommit=True) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, false)", [str(tenant_a.tenant.pk)])
        assert tenants_seen(conn) == {tenant_a.tenant.pk}
        yield conn


def test_the_application_role_cannot_turn_the_bypass_on(app_session, tenant_a, tenant_b):
    only_a = {tenant_a.tenant.pk}
    attempts = [
        "SET app.rls_bypass = 'on'",
        "SET app.rls_bypass = 'true'",
        "SELECT set_config('app.rls_bypass', 'on', false)",
        "SELECT set_config('app.rls_bypass', 'on', true)",
        # What the database knows of the key is its hash: presenting that does not open it.
        "SELECT set_config('app.rls_bypass', substring(pg_get_functiondef("
        "'public.mf_rls_bypass_granted()'::regprocedure) from '[0-9a-f]{64}'), false)",
    ]
    for statement in attempts:
        app_session.execute(statement)
        assert tenants_seen(app_session) == only_a, statement
        # Writing into B is refused too.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app_session.execute(
                "INSERT INTO tenants_apikey (tenant_id, name, prefix, hashed_key, scopes,"
                " created_at) VALUES (%s, 'x', 'zzzzzzzz', 'h', '{}', now())",
                [tenant_b.tenant.pk])
        assert app_session.execute(
            "UPDATE tenants_apikey SET name = 'stolen' WHERE tenant_id = %s",
            [tenant_b.tenant.pk]).rowcount == 0


@pytest.mark.parametrize("role", ["postgres", "pg_read_all_data", "pg_write_all_data"])
def test_the_application_role_cannot_assume_a_privileged_role(app_session, tenant_a, role):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_session.execute(f"SET ROLE {role}")
    assert tenants_seen(app_session) == {tenant_a.tenant.pk}


def test_the_application_role_cannot_replace_the_key_check(app_session, tenant_a):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app_session.execute("CREATE OR REPLACE FUNCTION public.mf_rls_bypass_granted()"
                            " RETURNS boolean LANGUAGE sql AS $$ SELECT true $$")
    assert tenants_seen(app_session) == {tenant_a.tenant.pk}


def test_the_key_opens_the_bypass(app_session, tenant_a, tenant_b):
    """What `tenants.context.rls_bypass()` sends: the application's key."""
    assert len(settings.RLS_BYPASS_KEY) >= 32
    app_session.execute("SELECT set_config('app.rls_bypass', %s, false)",
                        [settings.RLS_BYPASS_KEY])
    assert tenants_seen(app_session) == {tenant_a.tenant.pk, tenant_b.tenant.pk}
    assert connection.vendor == "postgresql"
