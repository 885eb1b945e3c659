"""The statements a warm request sends to Postgres: the hot path's cost, pinned."""

import psycopg
import pytest

from mfplatform.registry.runs import execute_run
from mfplatform.serving.candidates import search_settings
from mfplatform.serving.service import Request, recommend, similar_items
from mfplatform.training.services import queue_run
from tests.factories import TEST_PLAN, load_synthetic, make_plan, synthetic

pytestmark = pytest.mark.django_db


@pytest.fixture
def statements(monkeypatch):
    """The round trips to Postgres, as the statements each sends: Django's cursors and
    serving's prepared ones alike are psycopg cursors; statements sent in a pipeline (one
    network round trip) are joined into one entry."""
    executed: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self, query, *args, **kwargs):
        text = query if isinstance(query, str) else query.as_string(self)
        if self.connection._pipeline is not None and getattr(
                self.connection, "_counted_pipeline", None) is self.connection._pipeline:
            executed[-1] += "\n;\n" + text  # the pipeline's entry
        else:
            executed.append(text)
            self.connection._counted_pipeline = self.connection._pipeline
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    return executed


def in_autocommit(statements: list[str]) -> list[str]:
    """The statements as a request in autocommit sends them. These tests run inside a
    transaction, where the search width must be set again for every search; in autocommit it
    is sent only when it changes (the last test)."""
    return [s for s in statements if "hnsw.ef_search" not in s]


def test_a_known_user_costs_two_round_trips(served, statements):
    """The request state (version, user, history, suppressions, rules, the user's vector)
    and the candidate search with its catalogue rows."""
    with served.scope():
        recommend(served.tenant, "user-3", Request(k=10))  # warm: version, bundle, settings
        statements.clear()
        body = recommend(served.tenant, "user-3", Request(k=10))
    assert len(body["items"]) == 10 and {i["source"] for i in body["items"]} == {"mf"}
    sent = in_autocommit(statements)
    assert len(sent) == 2, sent
    assert "catalog_enduser" in sent[0] and "registry_uservector" in sent[0]
    assert "registry_itemvector" in sent[1]


def test_another_tenant_on_the_same_connection_costs_no_more(served, tenant_b, statements):
    """Requests alternate between tenants on one connection (many tenants, few connections):
    the session's tenant scope goes in the state's round trip, so switching costs none."""
    with tenant_b.scope():
        load_synthetic(tenant_b.tenant, synthetic(seed=3))
        execute_run(queue_run(tenant_b.tenant, make_plan(tenant_b.tenant, "main", **TEST_PLAN)))
    for fixture in (served, tenant_b, served):  # warm: versions, bundles, settings
        with fixture.scope():
            recommend(fixture.tenant, "user-3", Request(k=10))
    for fixture in (tenant_b, served):
        statements.clear()
        with fixture.scope():
            body = recommend(fixture.tenant, "user-3", Request(k=10))
        assert {i["source"] for i in body["items"]} == {"mf"}
        sent = in_autocommit(statements)
        assert len(sent) == 2, sent
        assert "app.tenant_id" in sent[0] and "registry_uservector" in sent[0]


def test_each_tenants_statements_stay_prepared_and_generic(served, tenant_b, settings):
    """Spread over many tenants, a session runs each tenant's statements a few times: they
    stay prepared (room for SERVING_PREPARED_STATEMENTS) and are planned generically from the
    first execution, instead of five custom plans first."""
    from django.db import connection

    settings.SERVING_PREPARED_STATEMENTS = 50
    with tenant_b.scope():
        load_synthetic(tenant_b.tenant, synthetic(seed=3))
        version_b = execute_run(queue_run(tenant_b.tenant,
                                          make_plan(tenant_b.tenant, "main", **TEST_PLAN)))
    for fixture in (served, tenant_b, served, tenant_b):
        with fixture.scope():
            recommend(fixture.tenant, "user-3", Request(k=10))
    raw = connection.connection
    prepared = [query for query, _types in raw._prepared._names]
    for version in (served.version, version_b):
        assert any(f"registry_itemvector_v{version.pk} " in q.decode() for q in prepared)
    assert raw.prepared_max == 50
    assert raw.execute("SHOW plan_cache_mode").fetchone()[0] == "force_generic_plan"


def test_a_request_runs_the_cached_generic_plan_of_the_candidate_search(served):
    """What a request pays for planning the candidate search: the server's own count of the
    session's prepared statement shows every execution on the generic plan, never a custom
    plan (made per execution), so the statement is planned once per session, not per
    request."""
    from django.db import connection

    with served.scope():
        for _ in range(3):
            recommend(served.tenant, "user-3", Request(k=10))
    raw = connection.connection
    rows = raw.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                       "WHERE statement LIKE %s",
                       [f"%FROM registry_itemvector_v{served.version.pk} %"]).fetchall()
    assert rows, "the candidate search is not a prepared statement"
    assert sum(generic for generic, _ in rows) >= 3 and all(custom == 0 for _, custom in rows)


def test_explanations_and_a_session_cost_one_statement_each(served, statements):
    """Explanations load the history's titles; a session resolves its external ids."""
    request = Request(k=10, explain=True, recent_items=["item-1", "item-2"])
    with served.scope():
        recommend(served.tenant, "user-3", request)
        statements.clear()
        body = recommend(served.tenant, "user-3", request)
    assert all(i["reason"] for i in body["items"])
    assert len(in_autocommit(statements)) == 4, statements


def test_similar_items_costs_three_statements(served, statements):
    """The item, the request state and the candidate search."""
    with served.scope():
        similar_items(served.tenant, "item-7", 5)
        statements.clear()
        body = similar_items(served.tenant, "item-7", 5)
    assert len(body["items"]) == 5 and body["items"][0]["source"] == "mf"
    assert len(in_autocommit(statements)) == 3, statements


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_the_search_width_is_sent_only_when_it_changes(statements):
    search_settings(100)
    statements.clear()
    search_settings(100)
    assert statements == []
    search_settings(200)
    search_settings(200)
    assert len(statements) == 1 and "hnsw.ef_search" in statements[0]
