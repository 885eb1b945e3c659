import socket

from celery import shared_task

from mfplatform.ops.models import WorkerPing


@shared_task(name="ops.ping")
def ping(token: str) -> None:
    WorkerPing.objects.get_or_create(token=token, defaults={"hostname": socket.gethostname()})
