"""The current tenant of a request or task, in the application and in the database session.

Row-level security policies read `app.tenant_id` and `app.rls_bypass` from the Postgres
session. Both are set here from one context variable, on every open connection and on every
new one, so the application's scoping (wall one) and the database's (wall two) always agree.
No tenant set means no rows: the policy compares tenant_id with NULL.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connections
from django.db.backends.signals import connection_created
from django.dispatch import receiver


@dataclass(frozen=True)
class _Scope:
    tenant_id: int | None = None
    bypass: bool = False


_NO_SCOPE = _Scope()
_scope: contextvars.ContextVar[_Scope] = contextvars.ContextVar(
    "tenant_scope", default=_NO_SCOPE)  # noqa: B039 - frozen, so sharing it is safe


def current_tenant_id() -> int | None:
    return _scope.get().tenant_id


def bypass_active() -> bool:
    return _scope.get().bypass


def _apply(connection, scope: _Scope) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('app.tenant_id', %s, false),"
            " set_config('app.rls_bypass', %s, false)",
            ["" if scope.tenant_id is None else str(scope.tenant_id),
             "on" if scope.bypass else "off"],
        )


def _apply_to_open_connections() -> None:
    scope = _scope.get()
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            _apply(connection, scope)


@receiver(connection_created)
def _on_connection_created(sender, connection, **kwargs) -> None:
    _apply(connection, _scope.get())


def _set(scope: _Scope) -> contextvars.Token:
    token = _scope.set(scope)
    _apply_to_open_connections()
    return token


def _reset(token: contextvars.Token) -> None:
    _scope.reset(token)
    _apply_to_open_connections()


@contextmanager
def tenant_context(tenant) -> Iterator[None]:
    """Run the block as `tenant` (a Tenant or its id): only its rows are visible or writable."""
    tenant_id = tenant if isinstance(tenant, int) else tenant.pk
    token = _set(_Scope(tenant_id=tenant_id, bypass=False))
    try:
        yield
    finally:
        _reset(token)


@contextmanager
def rls_bypass() -> Iterator[None]:
    """Cross-tenant access for the narrow places that need it: API key lookup, operators,
    migrations of data. Keep the block as small as the work it does."""
    token = _set(_Scope(tenant_id=_scope.get().tenant_id, bypass=True))
    try:
        yield
    finally:
        _reset(token)


def activate(tenant_id: int | None, bypass: bool = False) -> None:
    """Set the scope for the rest of a request; `deactivate` clears it (middleware does)."""
    _set(_Scope(tenant_id=tenant_id, bypass=bypass))


def deactivate() -> None:
    if _scope.get() != _Scope():
        _set(_Scope())


def reset_connections() -> None:
    """No tenant, on this thread's open connections too, whatever a previous request left:
    with persistent connections a reused session must never carry an earlier scope."""
    _scope.set(_Scope())
    _apply_to_open_connections()
