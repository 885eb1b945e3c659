from django.db import migrations, models

REAPER = "reap import jobs without a live worker"


def schedule_reaper(apps, schema_editor):
    """Every minute from beat, in django-celery-beat's tables like the training runs' reaper
    (the admin's Periodic tasks shows and can change it)."""
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = interval_model.objects.get_or_create(every=60, period="seconds")
    task_model.objects.update_or_create(name=REAPER, defaults={
        "interval": every_minute, "task": "catalog.reap_stale_import_jobs", "enabled": True})


def unschedule_reaper(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=REAPER).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0009_event_position_event_recommendation_id"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="importjob",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(schedule_reaper, unschedule_reaper),
    ]
