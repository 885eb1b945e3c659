from django.db import migrations

from tenants.rls import enable_rls

RETENTION = "drop impressions past their retention"


def schedule_retention(apps, schema_editor):
    """Beat drops old impressions once an hour (experiments.drop_old_impressions)."""
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = interval_model.objects.get_or_create(every=1, period="hours")
    task_model.objects.update_or_create(name=RETENTION, defaults={
        "interval": every, "task": "experiments.drop_old_impressions", "enabled": True})


def unschedule_retention(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=RETENTION).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        enable_rls("experiments_experiment"),
        enable_rls("experiments_variant"),
        enable_rls("experiments_impression"),
        migrations.RunPython(schedule_retention, unschedule_retention),
    ]
