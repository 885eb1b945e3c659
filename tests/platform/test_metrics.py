"""/metrics beyond serving: training runs, model age, queue depth and refused keys, for an
operator watching every tenant."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from mfplatform.registry.models import ModelStatus, ModelVersion
from mfplatform.training.models import RunStatus, TrainingRun
from tests.factories import make_model_version, make_plan, make_run

pytestmark = pytest.mark.django_db


def _value(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in /metrics:\n{text[:3000]}")


def test_training_and_model_metrics_cover_every_tenant(client, tenant_a, tenant_b):
    with tenant_a.scope():
        plan = make_plan(tenant_a.tenant)
        make_run(plan, RunStatus.FAILED)
        version = make_model_version(plan, status=ModelStatus.ACTIVE)
        ModelVersion.objects.filter(pk=version.pk).update(
            created_at=timezone.now() - timedelta(hours=2))
        run = version.training_run
        TrainingRun.objects.filter(pk=run.pk).update(
            started_at=timezone.now() - timedelta(seconds=90), finished_at=timezone.now())
    with tenant_b.scope():
        make_run(make_plan(tenant_b.tenant, "nightly"), RunStatus.QUEUED)

    text = client.get("/metrics").content.decode()
    assert _value(text, "mf_training_runs", tenant="alpha", status="failed") == 1
    assert _value(text, "mf_training_runs", tenant="alpha", status="succeeded") == 1
    assert _value(text, "mf_training_runs_in_progress", tenant="bravo") == 1
    assert 7100 < _value(text, "mf_model_age_seconds", tenant="alpha", plan="default") < 7300
    assert 89 < _value(text, "mf_training_last_run_duration_seconds", tenant="alpha",
                       plan="default", status="succeeded") < 91
    for queue in ("celery", "training_small", "training_large"):
        assert re.search(rf'^mf_broker_queue_depth\{{queue="{queue}"\}} \d', text, re.M)


def test_refused_keys_are_counted_by_reason(client):
    def refused(reason: str) -> float:
        text = client.get("/metrics").content.decode()
        try:
            return _value(text, "mf_auth_failures_total", reason=reason)
        except AssertionError:
            return 0.0

    before = refused("invalid"), refused("missing")
    assert APIClient().get("/api/v1/tenant", HTTP_AUTHORIZATION="Bearer mf_nothing_x"
                           ).status_code == 401
    assert APIClient().get("/api/v1/tenant").status_code == 401
    assert (refused("invalid"), refused("missing")) == (before[0] + 1, before[1] + 1)


def test_ingestion_rows_are_counted_per_tenant_and_outcome(client, tenant_a, tenant_b):
    def count(tenant: str, outcome: str) -> float:
        text = client.get("/metrics").content.decode()
        try:
            return _value(text, "mf_ingest_rows_total", tenant=tenant, kind="item",
                          outcome=outcome)
        except AssertionError:
            return 0.0

    before = {o: count("alpha", o) for o in ("stored", "rejected", "discarded")}
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tenant_a.raw_key}")
    good = [{"id": "m1", "title": "One"}, {"id": "m2", "title": "Two"}]
    assert api.post("/api/v1/items", good, format="json").status_code == 200
    # All-or-nothing: one bad row refuses the batch; the good one is discarded, not stored.
    bad = [{"id": "m3", "title": "Three"}, {"id": "", "title": "no id"}]
    assert api.post("/api/v1/items", bad, format="json").status_code == 400
    after = {o: count("alpha", o) for o in before}
    assert {o: after[o] - before[o] for o in before} == {
        "stored": 2, "rejected": 1, "discarded": 1}
    assert count("bravo", "stored") == 0
