import os
import subprocess
import sys

from tests.conftest import REPO


def _import_settings(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG")}
    clean.update(env, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    return subprocess.run([sys.executable, "-c", "import mfplatform.settings"], cwd=REPO,
                          env=clean, capture_output=True, text=True)


def test_settings_refuse_the_default_secret_key_outside_debug():
    refused = _import_settings()
    assert refused.returncode != 0
    assert "SECRET_KEY is the default development key" in refused.stderr
    assert _import_settings(DEBUG="1").returncode == 0
    assert _import_settings(SECRET_KEY="a-real-secret").returncode == 0


def test_local_secret_key_is_made_once_and_kept_private(tmp_path):
    from mfplatform.settings import local_secret_key

    path = tmp_path / "var" / "secret_key"
    first = local_secret_key(path)
    assert len(first) >= 50 and path.stat().st_mode & 0o777 == 0o600
    assert local_secret_key(path) == first


def test_the_brokers_hostname_warning_is_not_repeated_in_logs(caplog):
    import logging

    logger = logging.getLogger("kombu.connection")
    logger.warning("No hostname was supplied. Reverting to default 'localhost'")
    logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
