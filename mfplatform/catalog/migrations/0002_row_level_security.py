from django.db import migrations

from tenants.rls import enable_rls


class Migration(migrations.Migration):
    dependencies = [("catalog", "0001_initial")]

    operations = [
        enable_rls("catalog_item"),
        enable_rls("catalog_enduser"),
        enable_rls("catalog_eventtype"),
        enable_rls("catalog_event"),
        enable_rls("catalog_suppression"),
    ]
