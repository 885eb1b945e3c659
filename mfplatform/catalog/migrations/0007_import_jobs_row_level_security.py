from django.db import migrations

from tenants.rls import enable_rls


class Migration(migrations.Migration):
    dependencies = [("catalog", "0006_import_jobs")]

    operations = [enable_rls("catalog_importjob")]
