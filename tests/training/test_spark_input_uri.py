"""Where Spark reads a stored file (engines.spark_input_uri): the file's own path on the local
filesystem storage, the operator's prefix when set, and nothing for a storage Spark has no
scheme for (the fit then writes its own copy). The S3 mapping is tested against the real S3
server in tests/platform/test_object_storage.py."""

from __future__ import annotations

from pathlib import Path

from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, InMemoryStorage

from mfplatform.training.engines import spark_input_uri


def test_a_filesystem_storage_gives_the_files_own_path(tmp_path, settings):
    settings.SPARK_INPUT_URI_PREFIX = None
    storage = FileSystemStorage(location=tmp_path / "media")
    name = storage.save("datasets/7/v3.parquet", ContentFile(b"PAR1 stand-in"))
    uri = spark_input_uri(name, storage)
    assert uri == f"file://{tmp_path}/media/{name}"
    assert Path(uri.removeprefix("file://")).read_bytes() == b"PAR1 stand-in"


def test_the_prefix_names_the_storage_root_as_the_cluster_sees_it(tmp_path, settings):
    settings.SPARK_INPUT_URI_PREFIX = "file:///mnt/media/"
    storage = FileSystemStorage(location=tmp_path)
    assert spark_input_uri("datasets/7/v3.parquet", storage) == (
        "file:///mnt/media/datasets/7/v3.parquet")


def test_a_storage_spark_cannot_read_gives_no_uri(settings):
    settings.SPARK_INPUT_URI_PREFIX = None
    storage = InMemoryStorage()
    name = storage.save("datasets/7/v3.parquet", ContentFile(b"x"))
    assert spark_input_uri(name, storage) is None
