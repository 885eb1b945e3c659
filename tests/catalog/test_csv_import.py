from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from mfplatform.catalog.models import Event, Item

pytestmark = pytest.mark.django_db

MOVIES = "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n2,Heat,Action\n"
RATINGS = ("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n"
           "2,1,5.0,964982224\n")


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _import(*args):
    out, err = StringIO(), StringIO()
    call_command(*args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue()


def test_movielens_format_imports(tenant_a, tmp_path):
    out = _import("import_items", "alpha", _write(tmp_path, "movies.csv", MOVIES), "--map",
                  "item=movieId,title=title,category=genres,tags=genres")
    assert "created 2" in out
    out = _import("import_events", "alpha", _write(tmp_path, "ratings.csv", RATINGS), "--map",
                  "user=userId,item=movieId,value=rating,timestamp=timestamp", "--type", "rating")
    assert "created 3" in out
    with tenant_a.scope():
        toy = Item.objects.get(external_id="1")
        assert toy.category == "Adventure" and toy.tags == ["Adventure", "Animation", "Children"]
        event = Event.objects.get(user__external_id="1", item__external_id="2")
        assert event.value == 3.5 and int(event.timestamp.timestamp()) == 964981247


def test_bad_row_rolls_back_the_file_and_names_the_line(tenant_a, tmp_path):
    _import("import_items", "alpha", _write(tmp_path, "movies.csv", MOVIES), "--map",
            "item=movieId,title=title")
    bad = RATINGS + "3,1,five,964982224\n"
    err = StringIO()
    with pytest.raises(CommandError, match="1 invalid rows"):
        call_command("import_events", "alpha", _write(tmp_path, "r.csv", bad), "--map",
                     "user=userId,item=movieId,value=rating,timestamp=timestamp", "--type",
                     "rating", "--no-progress", stdout=StringIO(), stderr=err)
    assert "row 5: value" in err.getvalue()
    with tenant_a.scope():
        assert not Event.objects.exists()
    out = _import("import_events", "alpha", _write(tmp_path, "r2.csv", bad), "--map",
                  "user=userId,item=movieId,value=rating,timestamp=timestamp", "--type",
                  "rating", "--partial")
    assert "created 3" in out and "rejected 1" in out


def test_mapping_errors_are_clear(tenant_a, tmp_path):
    path = _write(tmp_path, "r.csv", RATINGS)
    with pytest.raises(CommandError, match="bad mapping"):
        _import("import_events", "alpha", path, "--map", "who=userId", "--type", "rating")
    with pytest.raises(CommandError, match="no column"):
        _import("import_events", "alpha", path, "--map", "user=uid,item=movieId",
                "--type", "rating")


def test_bad_row_in_a_later_chunk_rolls_back_earlier_chunks(tenant_a, tmp_path, monkeypatch):
    from mfplatform.catalog import csv_import

    monkeypatch.setattr(csv_import, "CHUNK", 2)
    _import("import_items", "alpha", _write(tmp_path, "movies.csv", MOVIES), "--map",
            "item=movieId")
    # Line 3 is blank, line 5 is short (no rating: stored without a value), line 6 has an
    # ISO time, line 7 a far-future one.
    text = ("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n\n1,2,3.5,964981247\n2,1\n"
            "3,2,1,2001-09-09T01:46:40Z\n4,2,1,4102444800\n")
    path = _write(tmp_path, "r.csv", text)
    args = ("import_events", "alpha", path, "--map",
            "user=userId,item=movieId,value=rating,timestamp=timestamp", "--type", "rating")
    err = StringIO()
    with pytest.raises(CommandError):
        call_command(*args, "--no-progress", stdout=StringIO(), stderr=err)
    assert "row 7: timestamp" in err.getvalue() and "row 5" not in err.getvalue()
    with tenant_a.scope():
        assert not Event.objects.exists()
    out = _import(*args, "--partial")
    assert "rows read 5" in out and "created 4" in out and "rejected 1" in out
    with tenant_a.scope():
        assert Event.objects.get(user__external_id="2").value is None
        assert Event.objects.get(user__external_id="3").timestamp.timestamp() == 1_000_000_000


def test_create_items_makes_placeholders(tenant_a, tmp_path):
    out = _import("import_events", "alpha", _write(tmp_path, "r.csv", RATINGS), "--map",
                  "user=userId,item=movieId,value=rating", "--type", "rating",
                  "--create-items")
    assert "created 3" in out
    with tenant_a.scope():
        assert set(Item.objects.values_list("external_id", "is_placeholder")) == {
            ("1", True), ("2", True)}


def test_item_import_names_the_bad_line(tenant_a, tmp_path):
    text = MOVIES + f"3,{'x' * 501},Drama\n"
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("import_items", "alpha", _write(tmp_path, "m.csv", text), "--map",
                     "item=movieId,title=title", "--no-progress", stdout=StringIO(), stderr=err)
    assert "row 4: title" in err.getvalue()
    with tenant_a.scope():
        assert not Item.objects.exists()


def test_prefetch_hands_over_reading_errors_and_stops_with_its_consumer():
    from mfplatform.catalog.csv_import import prefetch

    def chunks():
        yield 1
        yield 2
        raise ValueError("broken file")

    got = []
    with pytest.raises(ValueError, match="broken file"):
        for item in prefetch(chunks()):
            got.append(item)
    assert got == [1, 2]
    endless = prefetch(iter(range(10**9)), depth=1)
    assert next(endless) == 0
    endless.close()  # the reading thread stops instead of blocking on a full queue


def _failed_import(command, tmp_path, text, mapping, *extra):
    err = StringIO()
    with pytest.raises(CommandError) as failed:
        call_command(command, "alpha", _write(tmp_path, "f.csv", text), "--map", mapping,
                     *extra, "--no-progress", stdout=StringIO(), stderr=err)
    return str(failed.value), err.getvalue()


def test_nul_and_oversized_fields_are_row_errors_not_tracebacks(tenant_a, tmp_path):
    text = MOVIES + "3,Nul\x00title,Drama\n" + f'4,"{"x" * 200_000}",Drama\n' + "5,Fine,Drama\n"
    message, err = _failed_import("import_items", tmp_path, text, "item=movieId,title=title")
    assert "2 invalid rows" in message
    assert "row 4: column 2: contains a NUL character" in err
    assert "row 5: (row): unreadable CSV row: field larger than field limit" in err
    with tenant_a.scope():
        assert not Item.objects.exists()
    out = _import("import_items", "alpha", _write(tmp_path, "p.csv", text), "--map",
                  "item=movieId,title=title", "--partial")
    assert "created 3" in out and "rejected 2" in out
    with tenant_a.scope():
        assert sorted(Item.objects.values_list("external_id", flat=True)) == ["1", "2", "5"]


def test_a_byte_order_mark_before_the_header_is_dropped(tenant_a, tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + MOVIES.encode())
    out = _import("import_items", "alpha", str(path), "--map", "item=movieId,title=title")
    assert "created 2" in out


def test_every_bad_row_is_listed_and_counted_once(tenant_a, tmp_path):
    _import("import_items", "alpha", _write(tmp_path, "movies.csv", MOVIES), "--map",
            "item=movieId,title=title")
    bad = RATINGS + "3,1,five,soon\n" + "4,99,1,964982224\n"
    message, err = _failed_import("import_events", tmp_path, bad,
                                  "user=userId,item=movieId,value=rating,timestamp=timestamp",
                                  "--type", "rating")
    assert "2 invalid rows" in message, err
    assert "row 5: value" in err and "row 5: timestamp" in err
    assert "row 6: item: unknown item '99'" in err
