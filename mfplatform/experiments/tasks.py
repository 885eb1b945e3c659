from celery import shared_task

from mfplatform.experiments.impressions import drop_old_impressions


@shared_task(name="experiments.drop_old_impressions")
def drop_old_impressions_task() -> int:
    """Beat, hourly: impressions past IMPRESSION_RETENTION_DAYS are deleted."""
    return drop_old_impressions()
