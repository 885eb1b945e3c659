"""The statements a warm request sends to Postgres: the hot path's cost, pinned."""

import psycopg
import pytest

from mfplatform.serving.service import Request, recommend, similar_items

# Requests run in autocommit, as in production (inside a transaction ef_search is set every time).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def statements(monkeypatch):
    """Every statement executed on a psycopg cursor: Django's cursors and serving's prepared
    ones alike are psycopg cursors, so this counts the round trips of both."""
    executed: list[str] = []
    execute = psycopg.Cursor.execute

    def counting(self, query, *args, **kwargs):
        executed.append(query if isinstance(query, str) else query.as_string(self))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counting)
    return executed


def test_a_known_user_costs_two_statements(served, statements):
    """The request state (version, user, history, suppressions, rules) and the candidate
    search with its catalogue rows; the tenant scope and ef_search are sent only on change."""
    with served.scope():
        recommend(served.tenant, "user-3", Request(k=10))  # warm: version, bundle, settings
        statements.clear()
        body = recommend(served.tenant, "user-3", Request(k=10))
    assert len(body["items"]) == 10 and {i["source"] for i in body["items"]} == {"mf"}
    assert len(statements) == 2, statements
    assert "catalog_enduser" in statements[0] and "registry_itemvector" in statements[1]


def test_explanations_and_a_session_cost_one_statement_each(served, statements):
    """Explanations load the history's titles; a session resolves its external ids."""
    request = Request(k=10, explain=True, recent_items=["item-1", "item-2"])
    with served.scope():
        recommend(served.tenant, "user-3", request)
        statements.clear()
        body = recommend(served.tenant, "user-3", request)
    assert all(i["reason"] for i in body["items"])
    assert len(statements) == 4, statements


def test_similar_items_costs_three_statements(served, statements):
    """The item, the request state and the candidate search."""
    with served.scope():
        similar_items(served.tenant, "item-7", 5)
        statements.clear()
        body = similar_items(served.tenant, "item-7", 5)
    assert len(body["items"]) == 5 and body["items"][0]["source"] == "mf"
    assert len(statements) == 3, statements
