"""End users' attributes (onboarding answers such as `segment`). The column gets a database
default too: events create users with a raw INSERT that does not name it."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("catalog", "0007_import_jobs_row_level_security"),
    ]

    operations = [
        migrations.AddField(
            model_name="enduser",
            name="attributes",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunSQL(
            "ALTER TABLE catalog_enduser ALTER COLUMN attributes SET DEFAULT '{}'::jsonb",
            "ALTER TABLE catalog_enduser ALTER COLUMN attributes DROP DEFAULT"),
    ]
