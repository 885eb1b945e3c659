from django.db import models


class WorkerPing(models.Model):
    """Written by the worker's `ping` task: proof that a task went through a real worker."""

    token = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"ping {self.token} from {self.hostname}"
