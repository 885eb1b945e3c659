"""`make stop-db` stops the embedded PostgreSQL that `make run`'s Ctrl-C leaves running (the
tests and the next run share it). Tried on a server of its own, never the suite's."""

import os
import shutil
import subprocess
import sys
import uuid

import psycopg
import pytest

from tests.conftest import REPO


@pytest.fixture
def var_dir():
    # Under var/, not pytest's tmp_path: as root, Postgres runs as pgserver's own system user,
    # which cannot enter root's private temporary folders.
    folder = REPO / "var" / f"test-stop-db-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_stop_db_stops_a_running_embedded_server(var_dir):
    import pgserver

    data_dir = var_dir / "pgdata"
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    socket_dir = server.get_postmaster_info().socket_dir
    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    def stop_db():
        # What `make stop-db` runs, with this server's folder.
        return subprocess.run([sys.executable, "-m", "mfplatform.embedded_db", "stop"],
                              cwd=REPO, env={**os.environ, "VAR_DIR": str(var_dir)},
                              capture_output=True, text=True, timeout=180)

    done = stop_db()
    assert done.returncode == 0, done.stderr
    assert "embedded PostgreSQL stopped" in done.stdout
    assert not (data_dir / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", connect_timeout=5)
    again = stop_db()
    assert again.returncode == 0 and "was not running" in again.stdout
