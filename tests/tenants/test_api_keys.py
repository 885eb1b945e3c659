"""API key authentication, scopes and throttling, through the real DRF stack."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.views import APIView

from tenants.auth import ApiKeyRateThrottle
from tenants.context import tenant_context
from tenants.models import ApiKey, Tenant, hash_key

pytestmark = pytest.mark.django_db


class IngestOnlyView(APIView):
    required_scope = "ingest"

    def get(self, request):
        return Response({"tenant": request.tenant.slug})


def call_ingest_view(raw_key: str | None):
    factory = APIRequestFactory()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"} if raw_key else {}
    return IngestOnlyView.as_view()(factory.get("/x", **headers))


def test_missing_key_is_401_with_json_error(client):
    response = APIClient().get("/api/v1/tenant")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert "Bearer" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer", "Token abc", "Bearer a b", "Bearer mf_nope_x"])
def test_malformed_or_unknown_key_is_401(header):
    response = APIClient().get("/api/v1/tenant", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_right_prefix_wrong_secret_is_401(tenant_a):
    forged = f"mf_{tenant_a.key.prefix}_not-the-secret"
    assert APIClient().get("/api/v1/tenant",
                           HTTP_AUTHORIZATION=f"Bearer {forged}").status_code == 401


def test_valid_key_resolves_its_tenant(tenant_a):
    response = tenant_a.client().get("/api/v1/tenant")
    assert response.status_code == 200
    assert response.json()["tenant"] == "alpha"
    assert response.json()["scopes"] == ["ingest", "manage", "recommend"]


def test_revoked_key_is_401(tenant_a):
    with tenant_a.scope():
        tenant_a.key.revoke()
    response = tenant_a.client().get("/api/v1/tenant")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_a_key_revoked_after_use_is_refused_at_once(tenant_a):
    assert tenant_a.client().get("/api/v1/tenant").status_code == 200  # now cached
    with tenant_a.scope():
        ApiKey.objects.get(pk=tenant_a.key.pk).revoke()
    assert tenant_a.client().get("/api/v1/tenant").status_code == 401


def test_a_verified_key_is_looked_up_once_within_the_cache_time(tenant_a):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert tenant_a.client().get("/api/v1/tenant").status_code == 200
    assert len([q for q in queries if 'FROM "tenants_apikey"' in q["sql"]]) == 1


def test_a_revocation_by_another_process_takes_effect_within_the_cache_time(
        tenant_a, settings):
    import time

    settings.API_KEY_CACHE_SECONDS = 0.2
    assert tenant_a.client().get("/api/v1/tenant").status_code == 200
    # A queryset update sends no signal: as if another process had revoked the key.
    with tenant_a.scope():
        ApiKey.objects.filter(pk=tenant_a.key.pk).update(revoked_at=timezone.now())
    time.sleep(0.3)
    assert tenant_a.client().get("/api/v1/tenant").status_code == 401


def test_deactivating_a_tenant_after_use_refuses_its_keys_at_once(tenant_a):
    assert tenant_a.client().get("/api/v1/tenant").status_code == 200
    tenant = Tenant.objects.get(pk=tenant_a.tenant.pk)
    tenant.is_active = False
    tenant.save()
    assert tenant_a.client().get("/api/v1/tenant").status_code == 401


def test_expired_key_is_401(tenant_a):
    with tenant_a.scope():
        key, raw = ApiKey.issue(tenant_a.tenant, ["ingest"],
                                expires_at=timezone.now() - timedelta(seconds=1))
    response = tenant_a.client(raw).get("/api/v1/tenant")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_inactive_tenant_is_401(tenant_a):
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(is_active=False)
    assert tenant_a.client().get("/api/v1/tenant").status_code == 401


def test_wrong_scope_is_403_naming_the_scope(tenant_a):
    with tenant_a.scope():
        _key, raw = ApiKey.issue(tenant_a.tenant, ["recommend"])
    response = call_ingest_view(raw)
    assert response.status_code == 403
    assert "'ingest' scope" in str(response.data["detail"])


def test_right_scope_passes_and_records_use(tenant_a):
    with tenant_a.scope():
        key, raw = ApiKey.issue(tenant_a.tenant, ["ingest"])
    response = call_ingest_view(raw)
    assert response.status_code == 200 and response.data == {"tenant": "alpha"}
    with tenant_a.scope():
        key.refresh_from_db()
    assert key.last_used_at is not None


def test_key_is_stored_hashed_with_visible_prefix(tenant_a):
    with tenant_a.scope():
        stored = ApiKey.objects.get(pk=tenant_a.key.pk)
    assert tenant_a.raw_key not in (stored.hashed_key, stored.prefix)
    assert stored.hashed_key == hash_key(tenant_a.raw_key)
    assert tenant_a.raw_key.startswith(f"mf_{stored.prefix}_")


def test_unknown_scope_is_refused(tenant_a):
    with tenant_a.scope(), pytest.raises(ValueError, match="unknown scopes"):
        ApiKey.issue(tenant_a.tenant, ["admin"])


def test_throttle_per_key(tenant_a, tenant_b, monkeypatch):
    monkeypatch.setitem(ApiKeyRateThrottle.THROTTLE_RATES, "api_key", "3/min")
    from django.core.cache import cache

    cache.clear()
    statuses = [tenant_a.client().get("/api/v1/tenant").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    # Another key has its own budget.
    assert tenant_b.client().get("/api/v1/tenant").status_code == 200


def test_throttle_window_says_when_to_retry_and_reopens(tenant_a, monkeypatch):
    from django.core.cache import cache

    cache.clear()
    monkeypatch.setitem(ApiKeyRateThrottle.THROTTLE_RATES, "api_key", "2/min")
    now = [6000.0 + 45]  # 45 s into a minute-long window
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: now[0])
    assert [tenant_a.client().get("/api/v1/tenant").status_code for _ in range(2)] == [200, 200]
    refused = tenant_a.client().get("/api/v1/tenant")
    assert refused.status_code == 429 and refused["Retry-After"] == "15"
    now[0] += 15
    assert tenant_a.client().get("/api/v1/tenant").status_code == 200


def test_create_tenant_command_prints_a_working_all_scopes_key():
    out = StringIO()
    call_command("create_tenant", "cmdco", "--name", "Cmd Co", "--admin-email",
                 "owner@cmd.test", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["tenant"] == "cmdco"
    response = APIClient().get("/api/v1/tenant",
                               HTTP_AUTHORIZATION=f"Bearer {payload['api_key']}")
    assert response.status_code == 200
    assert response.json()["scopes"] == ["ingest", "manage", "recommend"]


def test_create_api_key_command_scopes():
    tenant = Tenant.objects.create(slug="keyco", name="Key Co")
    out = StringIO()
    call_command("create_api_key", "keyco", "--scopes", "ingest,recommend", "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["scopes"] == ["ingest", "recommend"]
    with tenant_context(tenant):
        assert ApiKey.objects.get(prefix=ApiKey.split(payload["api_key"])).scopes == [
            "ingest", "recommend"]


def test_create_api_key_command_rejects_bad_scope():
    Tenant.objects.create(slug="badco", name="Bad Co")
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="scopes"):
        call_command("create_api_key", "badco", "--scopes", "ingest,root", stdout=StringIO())


def test_create_tenant_gives_a_new_admin_a_one_time_password_that_logs_in():
    out = StringIO()
    call_command("create_tenant", "pwco", "--admin-email", "owner@pw.test", "--json", stdout=out)
    password = json.loads(out.getvalue())["admin_password"]
    assert authenticate(username="owner@pw.test", password=password) is not None
    # A second tenant naming the same person does not reset their password.
    out = StringIO()
    call_command("create_tenant", "pwco2", "--admin-email", "owner@pw.test", "--json", stdout=out)
    assert "admin_password" not in json.loads(out.getvalue())
    assert authenticate(username="owner@pw.test", password=password) is not None
