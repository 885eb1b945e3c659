"""Row-level security: the bypass needs the key (tenants.rls), in databases whose policies
were created before it did. Here, in the top layer's app, because it runs after every app's
policies exist."""

from django.db import migrations

from tenants.rls import require_bypass_key


class Migration(migrations.Migration):

    dependencies = [
        ("ops", "0003_worker_ping_time"),
        ("tenants", "0002_row_level_security"),
        ("catalog", "0004_event_without_db_foreign_keys"),
        ("training", "0003_run_heartbeat_and_cancel"),
        ("registry", "0003_row_level_security"),
        ("serving", "0002_row_level_security"),
    ]

    operations = [require_bypass_key()]
