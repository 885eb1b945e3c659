from django.db import models
from django.utils import timezone


class WorkerPing(models.Model):
    """Written by the worker's `ping` task: proof that a task went through a real worker.
    Beat's periodic ping keeps one row (token "beat") whose time /healthz reads."""

    token = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"ping {self.token} from {self.hostname}"
