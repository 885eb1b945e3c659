from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mfplatform.input_guard import StorableJSONField
from mfplatform.training.models import DatasetVersion, TrainingPlan, TrainingRun
from mfplatform.training.plans import (
    PlanConfigSerializer,
    merge_plan_config,
    stored_plan_config,
    validate_plan_config,
)


@extend_schema_field(PlanConfigSerializer)
class PlanConfigField(StorableJSONField):
    """A plan's config: documented by the serializer that validates it (one source of truth),
    read as plain JSON so that validation can name every bad field by its path."""


class TrainingPlanSerializer(serializers.ModelSerializer):
    config = PlanConfigField(required=False, objects_only=True)

    class Meta:
        model = TrainingPlan
        fields = ["id", "name", "config", "revision", "is_active", "is_serving", "created_at",
                  "updated_at"]
        read_only_fields = ["id", "revision", "created_at", "updated_at"]

    def validate_config(self, value):
        if self.instance is not None and self.partial:  # PATCH: change only what was sent
            value = merge_plan_config(self.instance.config, value)
        return validate_plan_config(value)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if isinstance(data.get("config"), dict):
            data["config"] = stored_plan_config(data["config"])
        return data

    def validate_name(self, value):
        tenant = self.context["tenant"]
        clash = TrainingPlan.objects.filter(tenant=tenant, name=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"this tenant already has a plan named {value!r}")
        return value


class TrainingRunSerializer(serializers.ModelSerializer):
    plan = serializers.PrimaryKeyRelatedField(read_only=True)
    plan_revision = serializers.SlugRelatedField(slug_field="revision", read_only=True)
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = ["id", "plan", "plan_revision", "status", "trigger", "cutoff",
                  "dataset_version", "model_version", "progress", "timings", "error",
                  "attempts", "queued_at", "started_at", "heartbeat_at", "finished_at"]
        read_only_fields = fields

    def get_model_version(self, run) -> int | None:
        version = getattr(run, "model_version", None)
        return version.pk if version is not None else None


class CancelRunSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True,
                                   default="")


class DatasetVersionSerializer(serializers.ModelSerializer):
    plan = serializers.IntegerField(source="plan_revision.plan_id", read_only=True)
    plan_revision = serializers.SlugRelatedField(slug_field="revision", read_only=True)

    class Meta:
        model = DatasetVersion
        fields = ["id", "plan", "plan_revision", "cutoff", "content_hash", "n_users", "n_items",
                  "n_interactions", "counts", "created_at"]
        read_only_fields = fields
