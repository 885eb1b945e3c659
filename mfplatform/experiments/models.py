"""A/B experiments between models, their variants, and the impressions serving records."""

from __future__ import annotations

import secrets

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from tenants.models import TenantOwned


class Surface(models.TextChoices):
    RECOMMENDATIONS = "recommendations"
    SIMILAR_ITEMS = "similar_items"


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"


def new_salt() -> str:
    return secrets.token_hex(8)


class Experiment(TenantOwned):
    """Traffic of one surface split between variants by a hash of the user id and the salt.
    Variants are fixed once the experiment has started (serving caches them by id)."""

    name = models.CharField(max_length=100)
    surface = models.CharField(max_length=20, choices=Surface.choices,
                               default=Surface.RECOMMENDATIONS)
    status = models.CharField(max_length=10, choices=ExperimentStatus.choices,
                              default=ExperimentStatus.DRAFT)
    salt = models.CharField(max_length=32, default=new_salt)
    click_event = models.CharField(max_length=64, default="click")
    min_samples = models.PositiveIntegerField(default=1000)  # impressions per variant
    alpha = models.FloatField(default=0.05)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="unique_experiment_name"),
            # One running experiment per surface: serving asks for "the" experiment.
            models.UniqueConstraint(fields=["tenant", "surface"],
                                    condition=Q(status="running"),
                                    name="one_running_experiment_per_surface"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.surface}, {self.status})"


class VariantKind(models.TextChoices):
    VERSION = "version"  # a fixed model version
    PLAN = "plan"  # whatever version of the plan is active when the request comes
    POPULARITY = "popularity"  # control: popularity only, no model


class Variant(TenantOwned):
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE,
                                   related_name="variants")
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=10, choices=VariantKind.choices)
    model_version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT,
                                      null=True, blank=True, related_name="+")
    plan = models.ForeignKey("training.TrainingPlan", on_delete=models.PROTECT, null=True,
                             blank=True, related_name="+")
    share = models.FloatField()
    is_control = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["experiment", "name"],
                                               name="unique_variant_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Impression(TenantOwned):
    """One response as shown: its items in order (position = index + 1) with their sources.
    Written in batches by a background thread (experiments.impressions): no foreign keys in
    the database, as for events, since every constraint costs each written row."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.CASCADE, related_name="+",
                               db_index=False, db_constraint=False)
    recommendation_id = models.UUIDField()
    surface = models.CharField(max_length=20, choices=Surface.choices)
    user_external_id = models.CharField(max_length=255, blank=True)
    user_id = models.BigIntegerField(null=True, blank=True)
    items = ArrayField(models.BigIntegerField(), default=list)  # item pks, best first
    sources = ArrayField(models.CharField(max_length=32), default=list)
    model_version_id = models.BigIntegerField(null=True, blank=True)
    experiment_id = models.BigIntegerField(null=True, blank=True)
    variant = models.CharField(max_length=64, blank=True)
    latency_ms = models.FloatField(default=0.0)
    fallback = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "recommendation_id"], name="impression_rec_id"),
            models.Index(fields=["tenant", "user_id", "created_at"],
                         name="impression_user_time_x"),
            models.Index(fields=["experiment_id", "created_at"],
                         name="impression_experiment"),
            models.Index(fields=["created_at"], name="impression_created"),
        ]
