"""The second wall: Postgres row-level security through the application's own role."""

import pytest
from django.apps import apps
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse
from django.test import RequestFactory

from tenants import context
from tenants.context import rls_bypass, tenant_context
from tenants.middleware import AdminTenantMiddleware
from tenants.models import ApiKey, TenantOwned

pytestmark = pytest.mark.django_db


def raw_prefixes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT prefix FROM tenants_apikey")
        return {row[0] for row in cursor.fetchall()}


def test_application_role_is_subject_to_rls():
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False, False)


def test_raw_sql_without_tenant_returns_no_rows(tenant_a, tenant_b):
    assert raw_prefixes() == set()


def test_raw_sql_with_tenant_a_returns_only_a(tenant_a, tenant_b):
    with tenant_context(tenant_a.tenant):
        assert raw_prefixes() == {tenant_a.key.prefix}
    with tenant_context(tenant_b.tenant):
        assert raw_prefixes() == {tenant_b.key.prefix}
    assert raw_prefixes() == set()


def test_bypass_is_explicit_and_narrow(tenant_a, tenant_b):
    with rls_bypass():
        assert raw_prefixes() == {tenant_a.key.prefix, tenant_b.key.prefix}
    assert raw_prefixes() == set()


def test_orm_manager_fails_closed_without_tenant(tenant_a):
    assert list(ApiKey.objects.all()) == []
    with tenant_context(tenant_a.tenant):
        assert [k.pk for k in ApiKey.objects.all()] == [tenant_a.key.pk]


def test_cannot_write_a_row_for_another_tenant(tenant_a, tenant_b):
    with (tenant_context(tenant_a.tenant), pytest.raises(DatabaseError),
          transaction.atomic(), connection.cursor() as cursor):
        cursor.execute(
            "INSERT INTO tenants_apikey (tenant_id, name, prefix, hashed_key, scopes,"
            " created_at) VALUES (%s, 'x', 'zzzzzzzz', 'h', '{}', now())",
            [tenant_b.tenant.pk])


def test_every_tenant_owned_table_has_forced_rls():
    tables = [m._meta.db_table for m in apps.get_models() if issubclass(m, TenantOwned)]
    assert "tenants_apikey" in tables
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
                       " WHERE relname = ANY(%s)", [tables])
        found = {name: (rls, forced) for name, rls, forced in cursor.fetchall()}
    missing = [t for t in tables if found.get(t) != (True, True)]
    assert not missing, f"tables without FORCE ROW LEVEL SECURITY: {missing}"


def test_a_reused_connection_starts_every_request_without_a_tenant(tenant_a):
    """Persistent connections: whatever scope a previous request left on the session, the
    next request starts with none."""
    context.activate(tenant_a.tenant.pk, bypass=True)  # as if a request had leaked its scope
    assert raw_prefixes() == {tenant_a.key.prefix}
    seen = {}

    def probe(request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('app.tenant_id', true), "
                           "current_setting('app.rls_bypass', true)")
            seen["settings"] = cursor.fetchone()
        return HttpResponse("ok")

    request = RequestFactory().get("/healthz")
    request.user = AnonymousUser()
    AdminTenantMiddleware(probe)(request)
    assert seen["settings"] == ("", "")
    assert raw_prefixes() == set()


class _Undo(Exception):
    pass


def _scope_survives_a_rollback(tenant_a, tenant_b):
    """The session holds B; A is set inside a transaction that rolls back, so Postgres puts B
    back: the next statement as A must not trust what it told the session before."""
    with tenant_context(tenant_b.tenant):
        assert raw_prefixes() == {tenant_b.key.prefix}
    with tenant_context(tenant_a.tenant):
        with pytest.raises(_Undo), transaction.atomic():
            assert raw_prefixes() == {tenant_a.key.prefix}
            raise _Undo
        assert raw_prefixes() == {tenant_a.key.prefix}


def test_scope_is_set_again_after_a_savepoint_rollback(tenant_a, tenant_b):
    _scope_survives_a_rollback(tenant_a, tenant_b)  # the test's own transaction: a savepoint


@pytest.mark.django_db(transaction=True)
def test_scope_is_set_again_after_a_transaction_rollback(tenant_a, tenant_b):
    _scope_survives_a_rollback(tenant_a, tenant_b)


def test_scope_costs_a_round_trip_only_when_it_changes(tenant_a, monkeypatch):
    raw_prefixes()  # the session now holds no tenant
    sent = []
    send = context._send_scope
    monkeypatch.setattr(context, "_send_scope",
                        lambda cursor, scope: (sent.append(scope.tenant_id), send(cursor, scope)))
    with tenant_context(tenant_a.tenant):
        assert raw_prefixes() == {tenant_a.key.prefix}
        assert raw_prefixes() == {tenant_a.key.prefix}
    with tenant_context(tenant_a.tenant):  # the next request of the same tenant
        assert raw_prefixes() == {tenant_a.key.prefix}
    with rls_bypass():
        pass  # a scope no statement runs under is never sent
    assert raw_prefixes() == set()
    assert sent == [tenant_a.tenant.pk, None]
