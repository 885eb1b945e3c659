"""Django's PostgreSQL backend with the tenant scope (tenants.context) applied to the session
before each query that needs it: set `ENGINE` to "tenants.db"."""
