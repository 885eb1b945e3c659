"""The tenant's catalogue (items), its end users, event types, events and suppressions."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from tenants.models import TenantOwned


class Item(TenantOwned):
    external_id = models.CharField(max_length=255)
    title = models.CharField(max_length=500, blank=True)
    category = models.CharField(max_length=200, blank=True)
    tags = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    is_available = models.BooleanField(default=True)
    # Created from an event naming an unknown item (when the tenant allows it): unavailable
    # until the catalogue describes it.
    is_placeholder = models.BooleanField(default=False)
    banned_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "external_id"],
                                               name="unique_item_external_id")]
        indexes = [models.Index(fields=["tenant", "category"], name="item_tenant_category")]

    def __str__(self) -> str:
        return self.title or self.external_id


class EndUser(TenantOwned):
    """One of the tenant's own users (not a login of this platform)."""

    external_id = models.CharField(max_length=255)
    # Without consent: no personalised recommendations, never used in training.
    consent = models.BooleanField(default=True)
    is_internal = models.BooleanField(default=False)
    is_bot = models.BooleanField(default=False)
    # What the tenant knows of the user before any event (onboarding answers); `segment`
    # places a user without events at the mean vector of that segment's users.
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "external_id"],
                                               name="unique_enduser_external_id")]

    def __str__(self) -> str:
        return self.external_id


class EventKind(models.TextChoices):
    POSITIVE = "positive"
    NEGATIVE = "negative"  # hide, dislike: the user's suppression list
    POLICY = "policy"  # report...: never training data


class EventType(TenantOwned):
    """An event name the tenant sends and what kind it is. How much a positive event counts in
    training is the plan's `events` mapping (one plan may weigh a purchase differently from
    another), so there is no weight here."""

    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=10, choices=EventKind.choices,
                            default=EventKind.POSITIVE)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"],
                                               name="unique_eventtype_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Event(TenantOwned):
    # The biggest table, written 100,000 rows at a time: every index and constraint costs each
    # ingested row. No database-level foreign keys (their deferred checks, four index probes
    # per row at commit, took three times as long as the insert itself): the ingestion service
    # resolves every user, item and type inside the tenant in the same transaction and locks
    # the users against deletion (delete_end_user); Django still cascades deletions. No
    # single-column indexes that the composite ones below cover, none on the event type.
    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+",
                               db_index=False, db_constraint=False)
    user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="events",
                             db_index=False, db_constraint=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="events",
                             db_constraint=False)
    event_type = models.ForeignKey(EventType, on_delete=models.PROTECT, related_name="events",
                                   db_index=False, db_constraint=False)
    value = models.FloatField(null=True, blank=True)
    timestamp = models.DateTimeField()
    # NULL, not "", when absent: the unique constraint applies to given ids only.
    event_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    # The response the event answers (its recommendation_id) and the item's position in it,
    # when the client sends them; attribution to impressions happens when an experiment's
    # results are computed (mfplatform/experiments/results.py), not here.
    recommendation_id = models.UUIDField(null=True, blank=True)
    position = models.PositiveSmallIntegerField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "event_id"],
                                               condition=Q(event_id__isnull=False),
                                               name="unique_event_id")]
        indexes = [models.Index(fields=["tenant", "timestamp"], name="event_tenant_time"),
                   models.Index(fields=["user", "timestamp"], name="event_user_time")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.event_type_id} {self.item_id} @ {self.timestamp}"


class Suppression(TenantOwned):
    """An item the user hid or disliked: never recommended to them again."""

    user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="suppressions")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user", "item"],
                                               name="unique_suppression")]

    def __str__(self) -> str:
        return f"{self.user_id} x {self.item_id} ({self.reason})"


class ImportKind(models.TextChoices):
    ITEMS = "items"
    EVENTS = "events"


class ImportStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ImportJob(TenantOwned):
    """A CSV file uploaded in the admin, imported by a worker (catalog.import_jobs): the same
    validation and all-or-nothing rule as `import_items` / `import_events`."""

    kind = models.CharField(max_length=10, choices=ImportKind.choices)
    file = models.CharField(max_length=300)  # path in the default storage
    file_name = models.CharField(max_length=255, blank=True)  # as uploaded
    mapping = models.JSONField(default=dict)  # field -> column
    options = models.JSONField(default=dict, blank=True)  # partial, default type, tags_sep...
    status = models.CharField(max_length=10, choices=ImportStatus.choices,
                              default=ImportStatus.QUEUED)
    rows = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    errors_file = models.CharField(max_length=300, blank=True)  # CSV of row errors, in storage
    requested_by = models.CharField(max_length=255, blank=True)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written with the counts after every chunk (catalog.import_liveness): a running job whose
    # heartbeat is older than IMPORT_JOB_STALE_SECONDS has lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at"]

    @property
    def accepted(self) -> int:
        """Rows read that passed validation (stored when the job succeeds)."""
        return max(self.rows - self.rejected, 0)

    def __str__(self) -> str:
        return f"{self.kind} import {self.file_name or self.pk} ({self.status})"
