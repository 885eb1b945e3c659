"""Model versions, their vectors in pgvector, and the audit log of promotions and rollbacks."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField

from tenants.models import TenantOwned


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate"
    ACTIVE = "active"
    RETIRED = "retired"
    REJECTED = "rejected"
    FAILED = "failed"


class ModelKind(models.TextChoices):
    MF = "mf", "matrix factorization"
    FALLBACK = "fallback", "fallback (content-based + popularity)"


class ModelVersion(TenantOwned):
    plan = models.ForeignKey("training.TrainingPlan", on_delete=models.CASCADE,
                             related_name="model_versions")
    plan_revision = models.ForeignKey("training.PlanRevision", on_delete=models.PROTECT,
                                      related_name="model_versions")
    dataset_version = models.ForeignKey("training.DatasetVersion", on_delete=models.PROTECT,
                                        related_name="model_versions")
    # One model version per run: a retried task finds it instead of making a second one.
    training_run = models.OneToOneField("training.TrainingRun", on_delete=models.PROTECT,
                                        related_name="model_version")
    version = models.PositiveIntegerField()  # 1, 2, 3... per plan
    kind = models.CharField(max_length=10, choices=ModelKind.choices, default=ModelKind.MF)
    strategy = models.CharField(max_length=100)
    hyperparameters = models.JSONField(default=dict)
    dimensions = models.PositiveIntegerField(default=0)  # length of the stored item vectors
    status = models.CharField(max_length=10, choices=ModelStatus.choices,
                              default=ModelStatus.CANDIDATE)
    artifact = models.CharField(max_length=300, blank=True)  # path in the default storage
    # sha256 of each file in `artifact`, recorded before the row commits (empty: published
    # before checksums were kept).
    checksums = models.JSONField(default=dict, blank=True)
    report = models.JSONField(default=dict, blank=True)  # mfengine evaluation report
    checks = models.JSONField(default=list, blank=True)  # mfengine quality checks
    decision = models.JSONField(default=dict, blank=True)  # promotion gate: verdict + reasons
    n_item_vectors = models.PositiveIntegerField(default=0)
    n_user_vectors = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    vectors_dropped_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Exactly one active version per plan: enforced by the database, not just code.
            models.UniqueConstraint(fields=["plan"], condition=Q(status="active"),
                                    name="one_active_model_per_plan"),
            models.UniqueConstraint(fields=["plan", "version"], name="unique_model_version"),
        ]

    def __str__(self) -> str:
        return f"{self.plan.name} v{self.version} ({self.status})"

    @property
    def index_name(self) -> str:
        """The HNSW index of this version's item-vector partition."""
        from mfplatform.registry.vectors import index_name  # vectors imports this module

        return index_name(self.pk)


class ItemVector(TenantOwned):
    """One item's vector of one model version. The table is LIST-partitioned by model version
    (migration 0004; partitions made by registry.vectors). Dimensions differ between model
    versions, so the column is an untyped vector, indexed per partition by an HNSW index on
    `embedding::vector(<dimensions>)`. The database has no primary key on `id` (a partitioned
    table's keys must contain the partition column): the unique (item, version) pair is the key."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE,
                                      related_name="item_vectors")
    item = models.ForeignKey("catalog.Item", on_delete=models.CASCADE, related_name="+")
    embedding = VectorField()
    # An item added after the version was trained, placed by its content (registry.cold):
    # how (one of mfengine.cold.PLACEMENTS). Defaults in the database too: publication
    # writes its rows with SQL that does not name these columns.
    cold = models.BooleanField(default=False, db_default=False)
    cold_placement = models.CharField(max_length=16, blank=True, default="", db_default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "item"],
                                               name="unique_item_vector")]


class UserVector(TenantOwned):
    """One user's vector of one model version; partitioned by model version like ItemVector."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE,
                                      related_name="user_vectors")
    user = models.ForeignKey("catalog.EndUser", on_delete=models.CASCADE, related_name="+")
    embedding = VectorField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "user"],
                                               name="unique_user_vector")]


class RegistryAction(models.TextChoices):
    PROMOTE = "promote"
    AUTO_PROMOTE = "auto_promote"
    ROLLBACK = "rollback"
    REJECT = "reject"


class PromotionLog(TenantOwned):
    """Who switched which version to which, when and why."""

    plan = models.ForeignKey("training.TrainingPlan", on_delete=models.CASCADE,
                             related_name="promotion_log")
    action = models.CharField(max_length=20, choices=RegistryAction.choices)
    from_version = models.ForeignKey(ModelVersion, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    to_version = models.ForeignKey(ModelVersion, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    actor = models.CharField(max_length=200)  # "user alice@x", "api key 1a2b3c4d", "system"
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.from_version_id} -> {self.to_version_id} by {self.actor}"
