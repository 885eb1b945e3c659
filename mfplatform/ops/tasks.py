import socket

from celery import shared_task
from django.utils import timezone

from mfplatform.ops.models import WorkerPing

BEAT_TOKEN = "beat"


@shared_task(name="ops.ping")
def ping(token: str = BEAT_TOKEN) -> None:
    """Answer a ping: the beat's (every 30 s, one row kept up to date) or a test's token."""
    WorkerPing.objects.update_or_create(token=token, defaults={
        "hostname": socket.gethostname(), "received_at": timezone.now()})
