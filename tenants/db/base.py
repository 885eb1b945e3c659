"""The PostgreSQL backend that keeps the session's row-level security settings in step with
the tenant scope of the running code (tenants.context).

Before every statement the scope in force is compared with what this session was last told;
only a difference costs a `set_config` round trip. So a request of one tenant on a persistent
connection pays for its scope once, not at every switch in and out. A rollback can undo a
`set_config` made inside the transaction, and a new connection (or one handed back by a pool)
may carry anything, so both make the session's settings unknown again.
"""

from __future__ import annotations

from django.db.backends.postgresql import base

from tenants import context


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.applied_scope = context.UNKNOWN_SCOPE
        self.execute_wrappers.append(context.scope_wrapper)

    def connect(self):
        self.applied_scope = context.UNKNOWN_SCOPE
        super().connect()

    def _rollback(self):
        self.applied_scope = context.UNKNOWN_SCOPE
        return super()._rollback()

    def _savepoint_rollback(self, sid):
        self.applied_scope = context.UNKNOWN_SCOPE
        return super()._savepoint_rollback(sid)
