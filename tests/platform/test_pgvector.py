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
