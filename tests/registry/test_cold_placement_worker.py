"""New items reach the active version through a real worker: a catalogue batch over REST
queues the placement (after its commit, debounced per tenant) and the worker inserts the
items' content-placed vectors into the version's partition, where serving finds them."""

import pytest

from mfplatform.registry.models import ItemVector, ModelStatus
from mfplatform.registry.runs import execute_run
from mfplatform.training.services import queue_run
from tests.conftest import wait_for
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic


@pytest.mark.django_db(transaction=True)
def test_items_sent_over_rest_are_placed_by_the_worker(tenant_a, tenant_b,
                                                       celery_worker_process):
    with tenant_a.scope():
        data = synthetic()
        load_synthetic(tenant_a.tenant, data)
        version = execute_run(queue_run(tenant_a.tenant, make_plan(tenant_a.tenant, "main",
                                                                   **TEST_PLAN)))
    assert version.status == ModelStatus.ACTIVE, version.decision
    category = str(data.item_categories[0])
    response = tenant_a.client().post("/api/v1/items", [
        {"external_id": "launch", "category": category, "tags": [f"{category}-1"]}],
        format="json")
    assert response.status_code in (200, 201), response.json()

    def placed():
        with tenant_a.scope():
            return list(ItemVector.objects.filter(model_version=version, cold=True)
                        .values_list("item__external_id", "cold_placement"))

    assert wait_for(placed, timeout=90, worker=celery_worker_process) == [
        ("launch", "attributes")]
    # Another tenant's batch places nothing in A's version.
    tenant_b.client().post("/api/v1/items", [{"external_id": "b-item"}], format="json")
    with tenant_a.scope():
        assert ItemVector.objects.filter(model_version=version).count() == data.n_items + 1
