"""The statements a warm request sends to Postgres: the hot path's cost, pinned."""

import psycopg
import pytest

from mfplatform.serving.candidates import search_settings
from mfplatform.serving.service import Request, recommend, similar_items

pytestmark = pytest.mark.django_db


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


def in_autocommit(statements: list[str]) -> list[str]:
    """The statements as a request in autocommit sends them. These tests run inside a
    transaction, where the search width must be set again for every search; in autocommit it
    is sent only when it changes (the last test)."""
    return [s for s in statements if "hnsw.ef_search" not in s]


def test_a_known_user_costs_two_statements(served, statements):
    """The request state (version, user, history, suppressions, rules) and the candidate
    search with its catalogue rows."""
    with served.scope():
        recommend(served.tenant, "user-3", Request(k=10))  # warm: version, bundle, settings
        statements.clear()
        body = recommend(served.tenant, "user-3", Request(k=10))
    assert len(body["items"]) == 10 and {i["source"] for i in body["items"]} == {"mf"}
    sent = in_autocommit(statements)
    assert len(sent) == 2, sent
    assert "catalog_enduser" in sent[0] and "registry_itemvector" in sent[1]


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
