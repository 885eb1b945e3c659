from rest_framework import serializers

from mfplatform.experiments.models import Experiment, Surface, Variant, VariantKind

MAX_ID = 2**63 - 1  # Postgres bigint: a larger id would be a database error, not a 400


class VariantSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=64)
    kind = serializers.ChoiceField(choices=VariantKind.choices)
    share = serializers.FloatField(min_value=0, max_value=1)
    model_version = serializers.IntegerField(source="model_version_id", required=False,
                                             allow_null=True, min_value=1,
                                             max_value=MAX_ID,
                                             help_text="kind version: the version's id")
    plan = serializers.IntegerField(source="plan_id", required=False, allow_null=True,
                                    min_value=1, max_value=MAX_ID,
                                    help_text="kind plan: the plan (its active version serves)")
    is_control = serializers.BooleanField(required=False, default=False)

    class Meta:
        model = Variant
        fields = ["name", "kind", "share", "model_version", "plan", "is_control"]


class ExperimentSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=100)
    surface = serializers.ChoiceField(choices=Surface.choices, default=Surface.RECOMMENDATIONS)
    click_event = serializers.CharField(max_length=64, default="click")
    min_samples = serializers.IntegerField(min_value=1, max_value=10**9, default=1000,
                                           help_text="impressions per variant before a "
                                                     "winner is called")
    alpha = serializers.FloatField(min_value=1e-6, max_value=0.5, default=0.05)
    variants = VariantSerializer(many=True, min_length=2, max_length=10)

    class Meta:
        model = Experiment
        fields = ["id", "name", "surface", "status", "click_event", "min_samples", "alpha",
                  "variants", "created_at", "started_at", "stopped_at"]
        read_only_fields = ["id", "status", "created_at", "started_at", "stopped_at"]


class PromoteVariantSerializer(serializers.Serializer):
    variant = serializers.CharField(max_length=64)
    reason = serializers.CharField(max_length=2000)


class ResultsSerializer(serializers.Serializer):
    """Documentation of GET .../results (computed, not a model)."""

    experiment = serializers.IntegerField()
    name = serializers.CharField()
    status = serializers.CharField()
    surface = serializers.CharField()
    attribution_window_hours = serializers.FloatField()
    variants = serializers.ListField(child=serializers.DictField())
    winner = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    method = serializers.DictField()
    daily = serializers.ListField(child=serializers.DictField())
