import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

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



def test_artifact_storage_is_a_local_folder_or_an_s3_bucket_from_the_environment():
    from mfplatform.settings import artifact_storage

    assert artifact_storage("filesystem")["BACKEND"].endswith("FileSystemStorage")
    with pytest.raises(ImproperlyConfigured, match="AWS_STORAGE_BUCKET_NAME"):
        artifact_storage("s3")
    with pytest.raises(ImproperlyConfigured, match="'ftp'"):
        artifact_storage("ftp")
    printed = subprocess.run(
        [sys.executable, "-c", "from mfplatform.settings import STORAGES; "
         "print(STORAGES['default'])"], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "SECRET_KEY": "a-real-secret", "ARTIFACT_STORAGE": "S3",
             "AWS_STORAGE_BUCKET_NAME": "models", "AWS_S3_ENDPOINT_URL": "http://minio:9000",
             "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"})
    assert printed.returncode == 0, printed.stderr
    assert "storages.backends.s3.S3Storage" in printed.stdout
    assert "'bucket_name': 'models'" in printed.stdout
    assert "'endpoint_url': 'http://minio:9000'" in printed.stdout
