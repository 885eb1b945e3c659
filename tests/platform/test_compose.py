"""The compose file, read as docker compose reads it (YAML with merge keys; no Docker engine
runs where this is developed): two web replicas behind the proxy, a worker per training queue,
beat, and every application service configured for the shared bucket with no shared disk."""

import re

import pytest
import yaml

from mfplatform.training.queues import WORKER_QUEUES
from tests.conftest import REPO

DOCKER = REPO / "docker"
APP_SERVICES = ("migrate", "web", "worker-small", "worker-large", "beat")


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]


def test_web_runs_two_replicas_reached_only_through_the_proxy(services):
    web, proxy = services["web"], services["proxy"]
    assert web["deploy"]["replicas"] == 2
    assert "ports" not in web  # replicas cannot share a host port; `--scale web=N` works
    assert "gunicorn" in web["command"] and "0.0.0.0:8000" in web["command"]
    assert proxy["ports"] == ["8000:80"]
    mounted = proxy["volumes"][0].split(":")
    assert (DOCKER / mounted[0]).is_file() and mounted[1].startswith("/etc/nginx/")
    nginx = (DOCKER / mounted[0]).read_text()
    assert "set $web http://web:8000;" in nginx and "proxy_pass $web;" in nginx
    assert "resolver 127.0.0.11" in nginx  # compose's DNS, asked again as replicas change
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_one_worker_per_training_queue_and_beat(services):
    for size, queues in WORKER_QUEUES.items():
        command = services[f"worker-{size}"]["command"]
        assert re.search(rf"--queues {','.join(queues)}(\s|$)", command), command
        assert "--concurrency 1" in command
    assert services["beat"]["command"].startswith("celery -A mfplatform beat")


def test_application_services_share_the_bucket_and_no_disk(services):
    bucket_job = " ".join(services["bucket"]["entrypoint"])
    for name in APP_SERVICES:
        service = services[name]
        env = service["environment"]
        assert env["ARTIFACT_STORAGE"] == "s3", name
        assert env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert f"store/{env['AWS_STORAGE_BUCKET_NAME']}" in bucket_job
        assert env["DATABASE_URL"].startswith("postgresql://mfapp:")  # not the superuser
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:")
        assert "volumes" not in service, f"{name} must not share a disk with other services"
        depends = service["depends_on"]
        assert depends["bucket"]["condition"] == "service_completed_successfully"
        assert {"db", "redis"} <= depends.keys()
    assert services["minio"]["image"].startswith("minio/minio")
    assert 'pip install --no-cache-dir ".[s3$(' in (DOCKER / "Dockerfile").read_text()
    assert {"db", "redis", "minio", "bucket", "proxy", *APP_SERVICES} == set(services)


def test_spark_is_a_build_argument_off_by_default(services):
    """The image gets the spark extra and a Java runtime only when asked (both or neither);
    the Spark package is copied either way (the extra only adds its dependencies)."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "ARG WITH_SPARK=0" in dockerfile
    assert 'if [ "$WITH_SPARK" = 1 ]; then echo default-jre-headless; fi' in dockerfile
    assert '".[s3$(if [ "$WITH_SPARK" = 1 ]; then echo ,spark; fi)]"' in dockerfile
    assert "COPY mfengine_spark ./mfengine_spark" in dockerfile
    for name in APP_SERVICES:
        assert services[name]["build"]["args"] == {"WITH_SPARK": "${WITH_SPARK:-0}"}, name
        assert services[name]["environment"]["SPARK_MASTER_URL"] == (
            "${SPARK_MASTER_URL:-local[2]}")
