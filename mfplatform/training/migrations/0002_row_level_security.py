from django.db import migrations

from tenants.rls import enable_rls


class Migration(migrations.Migration):
    dependencies = [("training", "0001_initial")]

    operations = [
        enable_rls("training_trainingplan"),
        enable_rls("training_planrevision"),
        enable_rls("training_datasetversion"),
        enable_rls("training_trainingrun"),
    ]
