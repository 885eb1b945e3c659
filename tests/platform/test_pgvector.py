import pytest
from django.db import connection


@pytest.mark.django_db
def test_vector_extension_installed():
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    assert row is not None


@pytest.mark.django_db
def test_inner_product_query_orders_rows_by_score():
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE vecs (id int, emb vector(3))")
        cursor.execute("INSERT INTO vecs VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[2,2,0]'),"
                       " (4, '[0,0,5]')")
        # <#> is the NEGATIVE inner product, so ascending order is best first.
        cursor.execute("SELECT id, -(emb <#> '[1,2,0]') FROM vecs ORDER BY emb <#> '[1,2,0]'")
        rows = cursor.fetchall()
    assert [r[0] for r in rows] == [3, 2, 1, 4]
    assert [round(r[1], 6) for r in rows] == [6.0, 2.0, 1.0, 0.0]


@pytest.mark.django_db
def test_the_embedded_server_is_sized_for_many_tenants():
    """shared_buffers as embedded_db sizes it (initdb's 128 MB holds one tenant's hot pages),
    and serving's sessions plan prepared statements generically (settings.DATABASES)."""
    from mfplatform.embedded_db import shared_buffers_bytes

    with connection.cursor() as cursor:
        cursor.execute("SELECT setting::bigint * 8192 FROM pg_settings "
                       "WHERE name = 'shared_buffers'")
        assert abs(cursor.fetchone()[0] - shared_buffers_bytes()) <= 8192
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_generic_plan"
