"""Fair training: runs go to a queue by tenant size class, a worker per queue, so a small
tenant's run starts while a large tenant's run is still training."""

import pytest

from mfplatform.training.models import RunStatus, TrainingRun
from mfplatform.training.queues import (
    LARGE_QUEUE,
    SMALL_QUEUE,
    WORKER_QUEUES,
    route_by_tenant_size,
    training_queue,
)
from mfplatform.training.services import queue_run
from tests.conftest import Worker, make_tenant, wait_for
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic


def _status(run: TrainingRun, tenant) -> str:
    with tenant.scope():
        return TrainingRun.objects.values_list("status", flat=True).get(pk=run.pk)


@pytest.mark.django_db
def test_the_queue_follows_the_tenants_event_count(tenant_a, tenant_b, settings):
    settings.TRAINING_LARGE_TENANT_EVENTS = 1000
    with tenant_a.scope():
        load_synthetic(tenant_a.tenant, synthetic(n_users=100, n_items=40, n_interactions=1500))
    with tenant_b.scope():
        load_synthetic(tenant_b.tenant, synthetic(n_users=50, n_items=20, n_interactions=300))
    assert training_queue(tenant_a.tenant.pk) == LARGE_QUEUE
    assert training_queue(tenant_b.tenant.pk) == SMALL_QUEUE
    for task in ("training.run", "serving.precompute"):
        assert route_by_tenant_size(task, [tenant_a.tenant.pk, 1], {}, {}) == {
            "queue": LARGE_QUEUE}
    assert route_by_tenant_size("ops.ping", [], {}, {}) is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_small_tenants_run_starts_while_a_large_tenant_trains(settings):
    settings.TRAINING_LARGE_TENANT_EVENTS = 10_000
    # The workers boot (seconds each) while the data loads: they take nothing before queue_run.
    small_worker = Worker(queues=WORKER_QUEUES["small"])
    large_worker = Worker(queues=WORKER_QUEUES["large"])
    try:
        _small_run_starts_while_large_trains(small_worker, large_worker)
    finally:
        large_worker.process.kill()  # no need to wait for a thousand iterations
        large_worker.stop()
        small_worker.stop()


def _small_run_starts_while_large_trains(small_worker: Worker, large_worker: Worker) -> None:
    large, small = make_tenant("large-co"), make_tenant("small-co")
    with large.scope():
        load_synthetic(large.tenant, synthetic(n_users=2000, n_items=300,
                                               n_interactions=20_000))
        # As long a fit as a plan allows: the large run must still be training afterwards.
        large_plan = make_plan(large.tenant, "main", **{**TEST_PLAN, "training": {
            "strategy": "als", "factors": 128, "iterations": 1000, "regularization": 1.0}})
    with small.scope():
        load_synthetic(small.tenant, synthetic(n_users=60, n_items=25, n_interactions=600))
        small_plan = make_plan(small.tenant, "main", **TEST_PLAN)
    with large.scope():
        large_run = queue_run(large.tenant, large_plan)
    wait_for(lambda: _status(large_run, large) == RunStatus.TRAINING, timeout=120,
             worker=large_worker)
    with small.scope():
        small_run = queue_run(small.tenant, small_plan)
    wait_for(lambda: _status(small_run, small) != RunStatus.QUEUED, timeout=60,
             worker=small_worker)
    assert _status(large_run, large) == RunStatus.TRAINING
    # Let it finish before the test's database is flushed.
    wait_for(lambda: _status(small_run, small) == RunStatus.SUCCEEDED, timeout=120,
             worker=small_worker)
