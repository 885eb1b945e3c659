"""Serving confirms the request's cached API key in the round trip it makes anyway (the
tenant's auth_version, tenants.auth.confirm_key): a key in use is not looked up again, and a
change made by another process (a queryset update sends no signal) applies to the next
request, not after the cache time."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tenants import auth
from tenants.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db

RECOMMEND = "/api/v1/recommendations?user=user-3&k=5"


@pytest.fixture
def clock(monkeypatch, settings):
    """The key cache's clock, moved by the test; a long cache time, so that only a
    confirmation can explain a refusal."""
    settings.API_KEY_CACHE_SECONDS = 60
    now = [1000.0]
    monkeypatch.setattr(auth, "_now", lambda: now[0])
    auth._VERIFIED.clear()
    return now


def key_lookups(queries) -> int:
    return len([q for q in queries if 'FROM "tenants_apikey"' in q["sql"]])


def test_serving_takes_a_cached_key_of_any_age_and_confirms_it(served, clock):
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert served.client().get(RECOMMEND).status_code == 200
            clock[0] += 3600  # far past the cache time: its own round trip confirms it
    assert key_lookups(queries) == 1
    # A route that does not confirm its key looks it up after the cache time.
    with CaptureQueriesContext(connection) as queries:
        assert served.client().get("/api/v1/tenant").status_code == 200
    assert key_lookups(queries) == 1


def test_a_confirmed_key_stays_cached_for_the_other_routes(served, clock):
    assert served.client().get("/api/v1/tenant").status_code == 200
    clock[0] += 50
    assert served.client().get(RECOMMEND).status_code == 200  # confirmed: 60 s more
    clock[0] += 50
    with CaptureQueriesContext(connection) as queries:
        assert served.client().get("/api/v1/tenant").status_code == 200
    assert key_lookups(queries) == 0


def test_a_revocation_by_another_process_refuses_the_next_request(served, clock):
    assert served.client().get(RECOMMEND).status_code == 200
    with served.scope():
        ApiKey.objects.filter(pk=served.key.pk).update(revoked_at=timezone.now())
    response = served.client().get(RECOMMEND)
    assert response.status_code == 401 and "revoked" in response.json()["detail"]
    # The cached key is gone for the other endpoints too.
    assert served.client().get("/api/v1/tenant").status_code == 401


def test_similar_items_confirm_the_key_too(served, clock):
    path = "/api/v1/items/item-7/similar?k=5"
    assert served.client().get(path).status_code == 200
    with served.scope():
        ApiKey.objects.filter(pk=served.key.pk).delete()
    assert served.client().get(path).status_code == 401


def test_a_deactivated_tenant_is_refused_at_its_next_request(served, clock):
    assert served.client().get(RECOMMEND).status_code == 200
    Tenant.objects.filter(pk=served.tenant.pk).update(is_active=False)
    response = served.client().get(RECOMMEND)
    assert response.status_code == 401 and "inactive" in response.json()["detail"]


def test_the_recommend_scope_taken_away_is_a_403(served, clock):
    assert served.client().get(RECOMMEND).status_code == 200
    with served.scope():
        ApiKey.objects.filter(pk=served.key.pk).update(scopes=["ingest"])
    response = served.client().get(RECOMMEND)
    assert response.status_code == 403 and "'recommend' scope" in response.json()["detail"]


def test_a_change_that_leaves_the_key_valid_costs_one_lookup(served, clock):
    """Another key of the tenant revoked: this one is read again once, and still serves."""
    with served.scope():
        other, _raw = ApiKey.issue(served.tenant, ["recommend"])
    assert served.client().get(RECOMMEND).status_code == 200
    with served.scope():
        ApiKey.objects.filter(pk=other.pk).update(revoked_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        assert served.client().get(RECOMMEND).status_code == 200
        assert served.client().get(RECOMMEND).status_code == 200
    assert key_lookups(queries) == 1


def test_auth_version_moves_on_every_change_that_matters_and_only_those(tenant_a):
    def version() -> int:
        return Tenant.objects.get(pk=tenant_a.tenant.pk).auth_version

    start = version()
    with tenant_a.scope():
        keys = ApiKey.objects.filter(pk=tenant_a.key.pk)
        keys.update(last_used_at=timezone.now())  # serving records use: changes nothing
        assert version() == start
        keys.update(scopes=["ingest"])
        assert version() == start + 1
    stale = Tenant.objects.get(pk=tenant_a.tenant.pk)
    Tenant.objects.filter(pk=stale.pk).update(name="Renamed")
    assert version() == start + 2
    # A save from a copy read before that still moves it on, never back.
    stale.save()
    assert version() == start + 3
    with tenant_a.scope():
        keys.delete()
    assert version() == start + 4
