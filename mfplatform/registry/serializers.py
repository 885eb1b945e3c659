from rest_framework import serializers

from mfplatform.registry.models import ModelVersion, PromotionLog


class ModelVersionSerializer(serializers.ModelSerializer):
    plan_revision = serializers.SlugRelatedField(slug_field="revision", read_only=True)

    class Meta:
        model = ModelVersion
        fields = ["id", "plan", "plan_revision", "dataset_version", "training_run", "version",
                  "kind", "strategy", "hyperparameters", "dimensions", "status", "decision",
                  "n_item_vectors", "n_user_vectors", "created_at", "activated_at",
                  "retired_at", "vectors_dropped_at"]
        read_only_fields = fields


class ModelVersionDetailSerializer(ModelVersionSerializer):
    class Meta(ModelVersionSerializer.Meta):
        fields = [*ModelVersionSerializer.Meta.fields, "checks", "report"]
        read_only_fields = fields


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(min_length=3, max_length=2000)


class PromotionLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = PromotionLog
        fields = ["id", "plan", "action", "from_version", "to_version", "actor", "reason",
                  "created_at"]
        read_only_fields = fields
