"""The migration graph is whole: one leaf per app (branches merged in parallel each adding a
migration with the same number make two) and no model change without its migration."""

import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_agree_and_each_app_has_one_leaf():
    out = io.StringIO()
    try:
        call_command("makemigrations", check=True, dry_run=True, stdout=out, stderr=out)
    except SystemExit as exited:  # --check exits 1 when a migration is missing
        pytest.fail(f"makemigrations --check failed ({exited.code}): {out.getvalue()}")
    assert "No changes detected" in out.getvalue()
