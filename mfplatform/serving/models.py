"""Eligibility rules, editorial picks, impressions (for frequency caps), precomputed lists."""

from __future__ import annotations

from django.db import models

from tenants.models import TenantOwned


class EligibilityRule(TenantOwned):
    """One business rule of the tenant; `kind` names a rule plugin (serving.rules)."""

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=64)
    params = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    order = models.PositiveIntegerField(default=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["order", "id"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"],
                                               name="unique_rule_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class EditorialPick(TenantOwned):
    """An item the tenant's editors pin into the fallback chain (optionally per category)."""

    item = models.ForeignKey("catalog.Item", on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(default=0)
    category = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"#{self.position} {self.item_id}"


class Impression(TenantOwned):
    """An item shown to a user; written only when a frequency-cap rule needs it."""

    user = models.ForeignKey("catalog.EndUser", on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey("catalog.Item", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"], name="impression_user_time")]


class PrecomputedRecommendation(TenantOwned):
    user = models.ForeignKey("catalog.EndUser", on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE,
                                      related_name="+")
    generated_at = models.DateTimeField(auto_now_add=True)
    # [[item pk, score], ...] best first; a new item placed by its content carries its
    # placement as a third element (serving.precompute)
    items = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "user"],
                                               name="unique_precomputed")]
