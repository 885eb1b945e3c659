"""The per-process serving cache: least recently used out first, within its byte budget, one
load per key, real bundles of real trained versions; the user's vector from Postgres; model
files read through the storage API only."""

import threading
import time

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import override_settings

from mfplatform.catalog.models import EndUser
from mfplatform.registry.models import ModelStatus
from mfplatform.registry.runs import execute_run
from mfplatform.serving import metrics, state
from mfplatform.serving.bundle import load_bundle, serving_bundle
from mfplatform.serving.cache import CACHE, ByteLRU
from mfplatform.serving.service import Request, recommend
from mfplatform.training.services import queue_run
from tests import artifact_files
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_versions(served):
    """The served version and a second plan's, both trained for real."""
    with served.scope():
        other = execute_run(queue_run(served.tenant, make_plan(served.tenant, "other",
                                                               **TEST_PLAN)))
    assert other.status == ModelStatus.ACTIVE, other.decision
    return served.version, other


def counter(metric, kind: str) -> float:
    return metric.labels(kind)._value.get()


def test_a_serving_bundle_holds_the_item_side_only_and_counts_its_bytes(served):
    with served.scope():
        full = load_bundle(served.version)
        bundle = serving_bundle(served.version, cache=ByteLRU(1 << 30))
    assert bundle.user_ids is None and bundle.model.user_factors_.shape == (
        0, full.model.user_factors_.shape[1])
    np.testing.assert_array_equal(bundle.model.item_factors_, full.model.item_factors_)
    np.testing.assert_array_equal(bundle.item_ids, full.item_ids)
    head_pks, head_vectors = bundle.head
    arrays = (bundle.model.item_factors_.nbytes + bundle.item_ids.nbytes + head_pks.nbytes
              + head_vectors.nbytes + bundle.popularity.item_scores_.nbytes)
    assert arrays <= bundle.nbytes() < arrays + 200_000  # content vectors, rankings, Gram
    assert bundle.nbytes() < full.nbytes()  # no user factors, no user ids


def test_the_least_recently_used_bundle_goes_first_and_bytes_stay_in_budget(two_versions,
                                                                           served):
    first, second = two_versions
    with served.scope():
        sizes = {v.pk: serving_bundle(v, cache=ByteLRU(1 << 30)).nbytes()
                 for v in two_versions}
        budget = sizes[first.pk] + sizes[second.pk]
        cache = ByteLRU(budget)
        serving_bundle(first, cache)
        serving_bundle(second, cache)
        assert cache.bytes == budget and cache.ordered_keys() == [("bundle", first.pk),
                                                          ("bundle", second.pk)]
        serving_bundle(first, cache)  # used: now the most recent
        evictions = counter(metrics.CACHE_EVICTIONS, "bundle")
        # A third bundle (the second's data again, under another key) does not fit beside
        # both: the least recently used one, the second, goes.
        third = serving_bundle(second, cache=ByteLRU(1 << 30))
        assert cache.put(("bundle", -1), third, third.nbytes())
    assert cache.ordered_keys() == [("bundle", first.pk), ("bundle", -1)]
    assert cache.bytes == sizes[first.pk] + third.nbytes() <= budget
    assert counter(metrics.CACHE_EVICTIONS, "bundle") == evictions + 1


def test_a_bundle_larger_than_the_budget_is_served_but_not_kept(served):
    with served.scope():
        size = serving_bundle(served.version, cache=ByteLRU(1 << 30)).nbytes()
        cache = ByteLRU(size - 1)
        cache.put(("version", 1), object(), 100)
        oversize = counter(metrics.CACHE_OVERSIZE, "bundle")
        bundle = serving_bundle(served.version, cache)
    assert bundle.version_id == served.version.pk
    assert cache.ordered_keys() == [("version", 1)] and cache.bytes == 100
    assert counter(metrics.CACHE_OVERSIZE, "bundle") == oversize + 1


def test_threads_asking_for_one_key_at_once_load_it_once():
    cache, calls, results = ByteLRU(1000), [], []

    def load():
        calls.append(1)
        time.sleep(0.2)
        return "value", 10

    threads = [threading.Thread(target=lambda: results.append(
        cache.get_or_load(("bundle", 1), load))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1] and results == ["value"] * 8 and cache.bytes == 10


def test_a_slow_load_does_not_hold_up_another_keys_load():
    cache, started = ByteLRU(1000), threading.Event()

    def slow():
        started.set()
        time.sleep(1.0)
        return "slow", 1

    thread = threading.Thread(target=cache.get_or_load, args=(("bundle", 1), slow))
    thread.start()
    started.wait()
    begun = time.perf_counter()
    assert cache.get_or_load(("bundle", 2), lambda: ("fast", 1)) == "fast"
    assert time.perf_counter() - begun < 0.5
    thread.join()


def test_versions_and_norm_heads_live_in_the_bounded_cache(served, tenant_b, settings):
    """Two tenants served alternately by a process whose budget holds one bundle: what was
    kept per version (the row, the norm head) no longer grows, and the bytes stay within the
    budget."""
    with tenant_b.scope():
        load_synthetic(tenant_b.tenant, synthetic(seed=1))
        other = execute_run(queue_run(tenant_b.tenant, make_plan(tenant_b.tenant, "main",
                                                                 **TEST_PLAN)))
    assert other.status == ModelStatus.ACTIVE
    assert not hasattr(state, "_VERSIONS")
    with served.scope():
        size_a = serving_bundle(served.version, cache=ByteLRU(1 << 30)).nbytes()
    with tenant_b.scope():
        size_b = serving_bundle(other, cache=ByteLRU(1 << 30)).nbytes()
    # Room for either bundle with both version rows and active versions, not for both.
    settings.SERVING_CACHE_BYTES = max(size_a, size_b) + 2 * (state.VERSION_BYTES + 64)
    assert size_a + size_b > settings.SERVING_CACHE_BYTES
    CACHE.clear()
    misses = counter(metrics.CACHE_MISSES, "bundle")
    for _round in range(3):
        for fixture in (served, tenant_b):
            with fixture.scope():
                body = recommend(fixture.tenant, "user-3", Request(k=5))
            assert {i["source"] for i in body["items"]} == {"mf"}
            assert CACHE.bytes <= settings.SERVING_CACHE_BYTES
    assert counter(metrics.CACHE_MISSES, "bundle") == misses + 6  # one bundle fits: reloads
    assert len([k for k in CACHE.ordered_keys() if k[0] == "bundle"]) == 1
    settings.SERVING_CACHE_BYTES = 1 << 30
    for _round in range(3):
        for fixture in (served, tenant_b):
            with fixture.scope():
                recommend(fixture.tenant, "user-3", Request(k=5))
    # Both fit now: the one evicted last loads once more, then both stay.
    assert counter(metrics.CACHE_MISSES, "bundle") == misses + 6 + 1


def test_the_users_vector_read_from_postgres_is_the_models(served):
    """The stored vector of every user, read by the request's state statement, equals the
    model's user factors bit for bit."""
    with served.scope():
        full = load_bundle(served.version)
        users = list(EndUser.objects.order_by("pk").values_list("pk", "external_id"))
        states = [state.request_state(served.tenant, external) for _pk, external in users]
    checked = 0
    for (pk, _external), request_state in zip(users, states, strict=True):
        row = full.row(pk)
        if row < 0:
            assert request_state.stored_vector is None
            continue
        vector = request_state.stored_vector[: full.model.n_factors_]
        np.testing.assert_array_equal(vector, full.model.user_factors_[row])
        checked += 1
    assert checked == full.model.user_factors_.shape[0] > 100


def test_serving_reads_model_files_through_the_storage_backend_only(served):
    """The version's files only in an in-memory storage (as object storage would hold them):
    the local folder is gone, and serving gives the same answer from the storage API."""
    with served.scope():
        before = recommend(served.tenant, "user-3", Request(k=10))
    files = {name: artifact_files.read_bytes(served.version, name)
             for name in served.version.checksums}
    artifact_files.delete_files(served.version)  # gone from the local folder
    memory = {"BACKEND": "django.core.files.storage.InMemoryStorage"}
    with override_settings(STORAGES={"default": memory}):
        for name, content in files.items():
            default_storage.save(f"{served.version.artifact}/{name}", ContentFile(content))
        CACHE.clear()  # a web process that never loaded it
        with served.scope():
            after = recommend(served.tenant, "user-3", Request(k=10))
    assert {i["source"] for i in after["items"]} == {"mf"}
    assert after["items"] == before["items"]
