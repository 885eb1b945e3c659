"""The current tenant of a request or task, in the application and in the database session.

Row-level security policies read `app.tenant_id` and `app.rls_bypass` (the bypass key, see
tenants.rls) from the Postgres session. Both follow one context variable: the database
backend (tenants.db) brings the session in step with it before every statement, so the
application's scoping (wall one) and the database's (wall two) always agree, and a scope
nobody queries under costs nothing.
No tenant set means no rows: the policy compares tenant_id with NULL.
Code that talks to the raw psycopg connection calls `apply_scope()` first.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connection as default_connection


@dataclass(frozen=True)
class _Scope:
    tenant_id: int | None = None
    bypass: bool = False


_NO_SCOPE = _Scope()
UNKNOWN_SCOPE = object()  # what a session holds after a rollback or a (re)connection
_scope: contextvars.ContextVar[_Scope] = contextvars.ContextVar(
    "tenant_scope", default=_NO_SCOPE)  # noqa: B039 - frozen, so sharing it is safe

_SCOPE_SQL = ("SELECT set_config('app.tenant_id', %s, false),"
              " set_config('app.rls_bypass', %s, false)")
# Statements that need no scope, and must not get one: after an error a transaction accepts
# nothing but its rollback.
_TRANSACTION_CONTROL = ("SAVEPOINT ", "ROLLBACK", "RELEASE SAVEPOINT ", "COMMIT", "BEGIN")


def current_tenant_id() -> int | None:
    return _scope.get().tenant_id


def bypass_active() -> bool:
    return _scope.get().bypass


def _send_scope(raw_cursor, scope: _Scope) -> None:
    # The bypass is the key itself (tenants.rls): a session that does not know it sees one
    # tenant at most, whatever it sets.
    raw_cursor.execute(_SCOPE_SQL, ["" if scope.tenant_id is None else str(scope.tenant_id),
                                    settings.RLS_BYPASS_KEY if scope.bypass else ""])


def scope_wrapper(execute, sql, params, many, context):
    """Django execute wrapper installed by tenants.db on every connection."""
    db = context["connection"]
    scope = _scope.get()
    if db.applied_scope != scope and not (
            isinstance(sql, str) and sql[:32].lstrip().upper().startswith(_TRANSACTION_CONTROL)):
        with db.wrap_database_errors:  # Django's exception classes, as for the statement
            _send_scope(context["cursor"].cursor, scope)
        db.applied_scope = scope
    return execute(sql, params, many, context)


def apply_scope(connection=None) -> None:
    """Bring the session in step now, for work on the raw psycopg connection (COPY)."""
    connection = connection or default_connection
    if connection.vendor != "postgresql":
        return
    connection.ensure_connection()
    scope = _scope.get()
    if getattr(connection, "applied_scope", UNKNOWN_SCOPE) != scope:
        with connection.wrap_database_errors, connection.connection.cursor() as cursor:
            _send_scope(cursor, scope)
        connection.applied_scope = scope


@contextmanager
def tenant_context(tenant) -> Iterator[None]:
    """Run the block as `tenant` (a Tenant or its id): only its rows are visible or writable."""
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    token = _scope.set(_Scope(tenant_id=tenant_id, bypass=False))
    try:
        yield
    finally:
        _scope.reset(token)


@contextmanager
def rls_bypass() -> Iterator[None]:
    """Cross-tenant access for the narrow places that need it: API key lookup, operators,
    migrations of data. Keep the block as small as the work it does."""
    token = _scope.set(_Scope(tenant_id=_scope.get().tenant_id, bypass=True))
    try:
        yield
    finally:
        _scope.reset(token)


def activate(tenant_id: int | None, bypass: bool = False) -> None:
    """Set the scope for the rest of a request; `deactivate` clears it (middleware does)."""
    _scope.set(_Scope(tenant_id=tenant_id, bypass=bypass))


def deactivate() -> None:
    _scope.set(_NO_SCOPE)
