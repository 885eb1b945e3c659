"""Artifacts in S3-compatible object storage, against a real S3 server process (moto's
standalone server): the pipeline writes every file to the bucket and nothing under MEDIA_ROOT,
the integrity check catches an object changed in the bucket, and a web server and a worker
with different MEDIA_ROOTs (no shared disk at all) train, promote and serve."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings

from mfplatform.catalog.import_jobs import create_import_job
from mfplatform.catalog.models import Item
from mfplatform.catalog.tasks import import_file
from mfplatform.registry.artifacts import damaged_artifacts
from mfplatform.registry.models import ModelStatus, ModelVersion
from mfplatform.registry.runs import execute_run
from mfplatform.registry.services import RegistryError, promote
from mfplatform.serving.cache import CACHE
from mfplatform.settings import artifact_storage
from mfplatform.training.services import queue_run
from tests.conftest import REPO, Worker, make_tenant, subprocess_env, wait_for
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic
from tests.platform.test_health import _free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-access-key", "AWS_SECRET_ACCESS_KEY": "test-secret",
               "AWS_S3_REGION_NAME": "us-east-1"}


class S3Server:
    """moto's standalone S3 server in a process of its own, with a bucket per test."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1",
                                   aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        wait_for(self._answers, timeout=60)

    def _answers(self) -> bool:
        assert self.process.poll() is None, "moto's S3 server exited"
        try:
            self.client.list_buckets()
        except Exception:  # not listening yet
            return False
        return True

    def new_bucket(self) -> str:
        name = f"artifacts-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def env(self, bucket: str) -> dict[str, str]:
        """What a process needs to keep its artifacts in the bucket (README's variables)."""
        return {"ARTIFACT_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": bucket,
                "AWS_S3_ENDPOINT_URL": self.url, **CREDENTIALS}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def s3_server():
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_storage(s3_server, monkeypatch, tmp_path):
    """This process's artifacts in a fresh bucket, configured as a deployment would be (the
    environment read by the settings), and MEDIA_ROOT an empty folder nothing may write to."""
    bucket = s3_server.new_bucket()
    for name, value in s3_server.env(bucket).items():
        monkeypatch.setenv(name, value)
    media = tmp_path / "media"
    with override_settings(STORAGES={**settings.STORAGES, "default": artifact_storage("s3")},
                           MEDIA_ROOT=media):
        CACHE.clear()  # nothing served from files read before
        yield bucket
    CACHE.clear()
    assert _files_under(media) == []


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.django_db
def test_the_pipeline_keeps_every_artifact_in_the_bucket(s3_server, s3_storage, tenant_a):
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic())
        plan = make_plan(tenant_a.tenant, "main", **TEST_PLAN)
        version = execute_run(queue_run(tenant_a.tenant, plan))
        assert version.status == ModelStatus.ACTIVE, version.decision
        dataset = version.dataset_version.artifact
    keys = s3_server.keys(s3_storage)
    assert dataset in keys
    assert {f"{version.artifact}/{name}" for name in version.checksums} <= set(keys)
    assert {"model_items.npz", "model_users.npz", "item_ids.npz", "user_ids.npz",
            "popularity.npz"} <= set(version.checksums)

    response = tenant_a.client().get("/api/v1/recommendations?user=user-1&k=10")
    assert response.status_code == 200, response.content
    assert {i["source"] for i in response.json()["items"]} == {"mf"}
    similar = tenant_a.client().get("/api/v1/items/item-1/similar?k=5")
    assert similar.status_code == 200 and len(similar.json()["items"]) == 5
    assert damaged_artifacts(version) is None

    # An object changed in the bucket: the checksum recorded at publication catches it.
    model_key = f"{version.artifact}/model_items.npz"
    raw = bytearray(s3_server.client.get_object(Bucket=s3_storage, Key=model_key)["Body"].read())
    raw[len(raw) // 2] ^= 0xFF
    s3_server.client.put_object(Bucket=s3_storage, Key=model_key, Body=bytes(raw))
    assert damaged_artifacts(version) == ("model_items.npz is not the file that was "
                                          "published (checksum mismatch)")
    with tenant_a.scope():
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelStatus.RETIRED)
        with pytest.raises(RegistryError, match="files are damaged"):
            promote(ModelVersion.objects.get(pk=version.pk), actor="test", reason="again")
    s3_server.client.delete_object(Bucket=s3_storage, Key=f"{version.artifact}/item_ids.npz")
    assert damaged_artifacts(version) == "item_ids.npz is missing"


# Transactional: the job's progress is written on a session of its own, which sees only
# committed rows (as in tests/catalog/test_import_jobs.py).
@pytest.mark.django_db(transaction=True)
def test_a_csv_import_job_reads_its_upload_from_the_bucket(s3_server, s3_storage, tenant_a):
    upload = SimpleUploadedFile("items.csv", b"id,title\n1,Heat\n2,Up\n3,\x00bad\n")
    with tenant_a.scope():
        job = create_import_job(tenant_a.tenant, "items", upload, {"item": "id", "title":
                                                                   "title"},
                                {"partial": True}, requested_by="test")
    assert job.file in s3_server.keys(s3_storage)
    import_file(tenant_a.tenant.pk, job.pk)  # what the worker runs
    with tenant_a.scope():
        job.refresh_from_db()
        assert (job.status, job.created, job.rejected) == ("succeeded", 2, 1), job.error
        assert set(Item.objects.values_list("title", flat=True)) == {"Heat", "Up"}
    assert job.errors_file in s3_server.keys(s3_storage)


class Http:
    def __init__(self, base: str, key: str):
        self.base, self.key = base, key

    def __call__(self, method: str, path: str, body=None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")
        except (urllib.error.URLError, ConnectionError):
            return 0, {}


@pytest.mark.django_db(transaction=True)
def test_web_and_worker_share_no_disk_only_the_bucket(s3_server, tmp_path):
    """Two processes as on two machines: each with a MEDIA_ROOT of its own, the same database,
    broker and bucket. The worker trains and publishes, the web process promotes (checking the
    files' checksums) and serves, and neither folder ever holds a file."""
    bucket = s3_server.new_bucket()
    web_media, worker_media = tmp_path / "web-media", tmp_path / "worker-media"
    # A broker of their own: the session's worker (local storage) must not take the run.
    broker = {"CELERY_BROKER_DIR": str(tmp_path / "broker")}
    alpha = make_tenant("shared-nothing")
    with alpha.scope():
        load_synthetic(alpha.tenant, synthetic())
    worker = Worker(env={**s3_server.env(bucket), **broker, "MEDIA_ROOT": str(worker_media)})
    port = _free_port()
    web_log = (tmp_path / "web.log").open("w")
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "mfplatform.wsgi:application", "--config",
         "python:mfplatform.gunicorn_conf", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
        cwd=REPO, stdout=web_log, stderr=subprocess.STDOUT,
        env=subprocess_env(**s3_server.env(bucket), **broker, MEDIA_ROOT=str(web_media),
                           WEB_ACCESS_LOG="",
                           PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus")))
    http = Http(f"http://127.0.0.1:{port}", alpha.raw_key)
    try:
        wait_for(lambda: http("GET", "/api/v1/tenant")[0] == 200, timeout=60)
        config = {**TEST_PLAN, "promotion": {"auto_promote": False}}
        status, plan = http("POST", "/api/v1/plans", {"name": "main", "config": config})
        assert status == 201, plan
        status, run = http("POST", f"/api/v1/plans/{plan['id']}/train")
        assert status == 202, run

        def finished():
            body = http("GET", f"/api/v1/runs/{run['id']}")[1]
            return body if body.get("status") in ("succeeded", "failed") else None

        done = wait_for(finished, timeout=120, worker=worker)
        assert done["status"] == "succeeded", done["error"]
        version_id = done["model_version"]
        status, log = http("POST", f"/api/v1/models/{version_id}/promote",
                           {"reason": "reviewed"})
        assert status == 200, log
        status, recs = http("GET", "/api/v1/recommendations?user=user-1&k=10")
        assert status == 200 and recs["model_version"]["id"] == version_id, recs
        assert {i["source"] for i in recs["items"]} == {"mf"}
        status, similar = http("GET", "/api/v1/items/item-1/similar?k=5")
        assert status == 200 and len(similar["items"]) == 5
    finally:
        web.terminate()
        web.wait(timeout=30)
        web_log.close()
        worker.stop()
    with alpha.scope():
        version = ModelVersion.objects.select_related("dataset_version").get(pk=version_id)
    keys = set(s3_server.keys(bucket))
    assert {f"{version.artifact}/{name}" for name in version.checksums} <= keys
    assert version.dataset_version.artifact in keys
    assert _files_under(web_media) == [] and _files_under(worker_media) == []


@pytest.mark.parametrize("location", ["", "tenants/artifacts"])
def test_spark_reads_a_stored_file_at_its_s3a_key(s3_server, monkeypatch, settings, location):
    """The s3a:// URI spark_input_uri gives a cluster names the object S3Storage wrote: same
    bucket, same key under the storage's location (AWS_LOCATION)."""
    from storages.backends.s3 import S3Storage

    from mfplatform.training.engines import spark_input_uri

    bucket = s3_server.new_bucket()
    for name, value in {**s3_server.env(bucket), "AWS_LOCATION": location}.items():
        monkeypatch.setenv(name, value)
    settings.SPARK_INPUT_URI_PREFIX = None
    storage = S3Storage(**artifact_storage("s3")["OPTIONS"])
    name = storage.save("datasets/7/v3.parquet", ContentFile(b"PAR1 stand-in"))
    uri = spark_input_uri(name, storage, master_url="spark://spark:7077")
    assert uri.startswith(f"s3a://{bucket}/")
    key = uri.removeprefix(f"s3a://{bucket}/")
    assert key == (f"{location}/{name}" if location else name)
    body = s3_server.client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == b"PAR1 stand-in"
    # Local Spark has no hadoop-aws (pyspark ships none): it reads a local copy instead.
    assert spark_input_uri(name, storage, master_url="local[2]") is None
