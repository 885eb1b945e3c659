"""The embedded PostgreSQL (pgserver: Postgres 16 + pgvector) used when no DATABASE_URL is set.

The server lives in a data folder under var/ and outlives the process that started it, so
`make run`, the tests and the Celery worker share one server. The bootstrap runs as the
superuser once: it creates the application's own role (not a superuser, no BYPASSRLS, so
row-level security applies to it) and installs pgvector into template1, because pgvector 0.6 is
not a trusted extension and only a superuser may create it; every database made later
(including pytest's test database) then has it. The same goes for the row-level security
bypass check (tenants.rls.bypass_function_sql): created by the superuser, in template1 and in
every existing database, with the hash of a key generated once into `rls-bypass.key` next to
the data folder; the application reads the key from there (settings.RLS_BYPASS_KEY).
The role owns its database (and, through pg_database_owner, its `public` schema), so the
tables it migrates are its own: it creates, attaches and drops the vector partition of each
model version at run time (mfplatform.registry.vectors) without any other privilege.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

APP_ROLE = "mfapp"
APP_DATABASE = "mfplatform"
_BOOTSTRAP_MARKER = ".mfplatform-bootstrap-v2"


def bypass_key_file(data_dir: Path) -> Path:
    return data_dir.parent / "rls-bypass.key"


def read_or_create_bypass_key(data_dir: Path) -> str:
    path = bypass_key_file(data_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def ensure_running(data_dir: Path) -> Path:
    """Start (or reuse) the embedded server; return the folder holding its Unix socket."""
    import pgserver  # imported here: production settings with DATABASE_URL never need it

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    socket_dir = Path(server.get_postmaster_info().socket_dir)
    marker = data_dir / _BOOTSTRAP_MARKER
    if not marker.exists() or not bypass_key_file(data_dir).exists():
        _bootstrap(socket_dir, read_or_create_bypass_key(data_dir))
        marker.write_text("ok\n")
    _size_shared_buffers(socket_dir, data_dir, server.system_user)
    return socket_dir


def stop(data_dir: Path) -> bool:
    """Stop the embedded server of ``data_dir`` (fast: open sessions end); False when none
    runs. Nothing stops it on its own: `make run`, the tests and workers share it, so `make
    run`'s Ctrl-C leaves it up for the next start; `make stop-db` calls this."""
    from pgserver._commands import pg_ctl

    if not (data_dir / "postmaster.pid").exists():
        return False
    # As root, pgserver runs Postgres as a system user of its own; pg_ctl must run as it.
    system_user = "pgserver" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=system_user, timeout=120)
    return True


def shared_buffers_bytes() -> int:
    """EMBEDDED_DB_SHARED_BUFFERS (bytes), else a quarter of the machine's memory up to 1 GiB.
    initdb's 128 MB holds one tenant's hot pages; traffic spread over hundreds of tenants
    reads each one's vectors, catalogue rows and indexes, and at 128 MB it went to the
    kernel's page cache for them on every request (issue 15)."""
    configured = os.environ.get("EMBEDDED_DB_SHARED_BUFFERS")
    if configured:
        return int(configured)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(memory // 4, 1024 ** 3)


def _size_shared_buffers(socket_dir: Path, data_dir: Path, system_user: str | None) -> None:
    """Set shared_buffers (ALTER SYSTEM) and restart once when it differs: a server setting
    that only a start applies."""
    import psycopg
    from pgserver._commands import pg_ctl

    wanted_kb = shared_buffers_bytes() // 1024
    with psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        current_kb = conn.execute("SELECT setting::bigint * 8 FROM pg_settings "
                                  "WHERE name = 'shared_buffers'").fetchone()[0]
        if abs(current_kb - wanted_kb) <= 8:
            return
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{int(wanted_kb)}kB'")
    # pg_ctl restart starts it again with the options of its last start (socket folder).
    pg_ctl(["-w", "-m", "fast", "-l", str(data_dir / "log"), "restart"], pgdata=data_dir,
           user=system_user, timeout=120)


def _bootstrap(socket_dir: Path, bypass_key: str) -> None:
    import psycopg
    from psycopg import sql

    from tenants.rls import bypass_function_sql

    def superuser(dbname: str) -> psycopg.Connection:
        return psycopg.connect(host=str(socket_dir), user="postgres", dbname=dbname,
                               autocommit=True)

    with superuser("template1") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(bypass_function_sql(bypass_key))
    with superuser("postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [APP_ROLE]).fetchone()
        if not exists:
            # CREATEDB so that pytest-django can create its test database as this same role.
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB").format(
                sql.Identifier(APP_ROLE)))
        has_db = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              [APP_DATABASE]).fetchone()
        if not has_db:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(APP_DATABASE), sql.Identifier(APP_ROLE)))
        databases = [row[0] for row in conn.execute(
            "SELECT datname FROM pg_database WHERE datallowconn AND datname <> 'template1'")]
    for name in databases:  # made before this version of the bootstrap: the check, too
        with superuser(name) as conn:
            conn.execute(bypass_function_sql(bypass_key))


def database_settings(data_dir: Path) -> dict:
    socket_dir = ensure_running(data_dir)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("EMBEDDED_DB_NAME", APP_DATABASE),
        "USER": APP_ROLE,
        "PASSWORD": "",
        "HOST": str(socket_dir),
        "PORT": "",
    }


if __name__ == "__main__":  # python -m mfplatform.embedded_db stop (make stop-db)
    import sys

    if sys.argv[1:] != ["stop"]:
        sys.exit("usage: python -m mfplatform.embedded_db stop")
    folder = Path(os.environ.get("VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
    print("embedded PostgreSQL stopped" if stop(folder / "pgdata")
          else "embedded PostgreSQL was not running")
