"""Fixtures shared by the platform tests: tenants with keys, API clients, a real worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tenants.context import tenant_context
from tenants.models import SCOPES, ApiKey, Tenant

REPO = Path(__file__).resolve().parent.parent


@dataclass
class TenantFixture:
    tenant: Tenant
    key: ApiKey
    raw_key: str

    def client(self, raw_key: str | None = None) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key or self.raw_key}")
        return client

    def scope(self):
        return tenant_context(self.tenant)


def make_tenant(slug: str) -> TenantFixture:
    tenant = Tenant.objects.create(slug=slug, name=slug.title())
    with tenant_context(tenant):
        key, raw = ApiKey.issue(tenant, SCOPES, name="test")
    return TenantFixture(tenant, key, raw)


@pytest.fixture
def tenant_a(db) -> TenantFixture:
    return make_tenant("alpha")


@pytest.fixture
def tenant_b(db) -> TenantFixture:
    return make_tenant("bravo")


def database_url_for_subprocess() -> str:
    """The test database as a URL, for processes started by the tests (worker, server)."""
    s = connection.settings_dict
    host = s["HOST"] or "localhost"
    if host.startswith("/"):
        host = quote(host, safe="")
    auth = s["USER"] + (f":{quote(s['PASSWORD'], safe='')}" if s["PASSWORD"] else "")
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"postgresql://{auth}@{host}{port}/{s['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for_subprocess()
    env.update(extra)
    return env


class Worker:
    """A real `celery worker` process on the test database."""

    def __init__(self, broker_url: str | None = None, queues: list[str] | None = None,
                 env: dict[str, str] | None = None):
        from mfplatform.training.queues import WORKER_QUEUES

        extra = {"CELERY_BROKER_URL": broker_url} if broker_url else {}
        extra.update(env or {})
        # The small-tenant worker's queues unless told otherwise (every test tenant is small):
        # a large-tenant run a test sends is only ever taken by a worker that test starts.
        queues = queues or WORKER_QUEUES["small"]
        self.log = REPO / "var" / f"test-worker-{uuid.uuid4().hex[:8]}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mfplatform", "worker", "--loglevel",
             "INFO", "--concurrency", "1", "--pool", "solo", "--without-heartbeat",
             "--without-gossip", "--without-mingle", "--queues", ",".join(queues),
             "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h"],
            cwd=REPO, env=subprocess_env(**extra), stdout=self._log_file,
            stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log_file.close()
        self.log.unlink(missing_ok=True)  # a failing wait_for has printed it already

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture(scope="session", autouse=True)
def _remove_session_broker_folder():
    """The session's own filesystem broker folder (mfplatform/test_settings.py) goes with it."""
    yield
    from django.conf import settings

    if settings.BROKER_DIR.name == f"test-broker-{os.getpid()}":
        shutil.rmtree(settings.BROKER_DIR, ignore_errors=True)


@pytest.fixture(autouse=True)
def _forget_unwritten_impressions():
    """Impressions a test's requests queued (and did not flush) belong to its rolled-back
    data: they must not be written in a later test, or at exit."""
    yield
    from mfplatform.experiments.impressions import BUFFER

    BUFFER.discard()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker):
    """One worker for the session; tests using it need django_db(transaction=True)."""
    with django_db_blocker.unblock():
        worker = Worker()
    yield worker
    worker.stop()


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = f"\nworker log:\n{worker.output()[-4000:]}" if worker is not None else ""
    raise AssertionError(f"condition not met within {timeout} s{detail}")
