from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from mfplatform.registry.models import ModelVersion, PromotionLog
from mfplatform.registry.services import history


class ModelVersionSerializer(serializers.ModelSerializer):
    plan_revision = serializers.SlugRelatedField(slug_field="revision", read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "plan", "plan_revision", "dataset_version", "training_run", "version",
                  "kind", "strategy", "hyperparameters", "dimensions", "status", "decision",
                  "n_item_vectors", "n_user_vectors", "created_at", "activated_at",
                  "retired_at", "vectors_dropped_at"]
        read_only_fields = fields


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(min_length=3, max_length=2000)


class PromoteSerializer(ReasonSerializer):
    override = serializers.BooleanField(
        default=False, help_text="Promote a version the promotion gate rejected; the reason "
                                 "is logged as the override's.")


class PromotionLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = PromotionLog
        fields = ["id", "plan", "action", "from_version", "to_version", "actor", "reason",
                  "created_at"]
        read_only_fields = fields


class ModelVersionDetailSerializer(ModelVersionSerializer):
    """One version with its quality checks, evaluation report and audit log entries."""

    log = serializers.SerializerMethodField()

    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "checks", "report", "log"]
        read_only_fields = fields

    @extend_schema_field(PromotionLogSerializer(many=True))
    def get_log(self, obj: ModelVersion) -> list[dict]:
        return PromotionLogSerializer(history(obj), many=True).data
