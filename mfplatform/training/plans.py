"""Training plan configuration: its JSON form, defaults and validation (field-path errors).

    {"model": "implicit_matrix_factorization_v1",
     "events": {"meaningful_click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4},
     "filters": ["exclude_bot", "exclude_internal", "valid_item", "consent_required"],
     "window": {"days": 90, "recency_half_life_days": 30},
     "training": {"strategy": "als", "factors": 64, "regularization": 0.05, "alpha": 10,
                  "iterations": 15},
     "split": {"kind": "temporal", "test_fraction": 0.2},
     "evaluation": {"k": [10, 20, 50]},
     "serving": {"candidates": 1000, "fallbacks": ["content_based", "popularity"]},
     "minimums": {"users": 20, "items": 10, "interactions": 200},
     "promotion": {...}, "schedule": "0 3 * * *"}
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django_celery_beat.validators import crontab_validator
from rest_framework import serializers

import mfengine

FILTERS = ("exclude_bot", "exclude_internal", "valid_item", "consent_required")
FALLBACKS = ("content_based", "editorial", "popularity")
METRICS = ("ndcg", "recall", "map", "hit_rate")


class WindowSerializer(serializers.Serializer):
    days = serializers.FloatField(min_value=1, max_value=3650, allow_null=True, default=90)
    recency_half_life_days = serializers.FloatField(min_value=0.1, allow_null=True, default=None)


class TransformSerializer(serializers.Serializer):
    log1p = serializers.BooleanField(default=True)
    use_values = serializers.BooleanField(default=False)
    max_events_per_user = serializers.IntegerField(min_value=1, allow_null=True, default=None)
    max_events_per_item = serializers.IntegerField(min_value=1, allow_null=True, default=None)
    max_strength = serializers.FloatField(min_value=0, allow_null=True, default=None)


class TrainingSerializer(serializers.Serializer):
    strategy = serializers.CharField(default="als")
    factors = serializers.IntegerField(min_value=2, max_value=1024, default=64)
    # Unset: the strategy's own default (tuned per strategy in mfengine).
    regularization = serializers.FloatField(min_value=0, required=False)
    alpha = serializers.FloatField(min_value=0, required=False)
    iterations = serializers.IntegerField(min_value=1, max_value=1000, default=15)
    learning_rate = serializers.FloatField(min_value=0, required=False)
    random_state = serializers.IntegerField(default=0)

    def validate_strategy(self, value: str) -> str:
        names = mfengine.available()
        if value not in names:
            raise serializers.ValidationError(
                f"unknown strategy {value!r}; available: {', '.join(names)}")
        return value

    def validate(self, attrs: dict) -> dict:
        params = {k: v for k, v in attrs.items() if k != "strategy"}
        try:
            mfengine.create(attrs["strategy"], **params)
        except (TypeError, ValueError) as exc:
            raise serializers.ValidationError(str(exc)) from exc
        return attrs


class SplitSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["temporal", "global"], default="temporal")
    test_fraction = serializers.FloatField(min_value=0.01, max_value=0.9, default=0.2)
    test_days = serializers.FloatField(min_value=0.01, default=7)
    positive_threshold = serializers.FloatField(allow_null=True, default=None)


class EvaluationSerializer(serializers.Serializer):
    k = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=1000),
                              min_length=1, default=[10, 20, 50])
    # Users evaluated at most (a seeded sample beyond this): bounds evaluation time.
    max_users = serializers.IntegerField(min_value=100, allow_null=True, default=5000)


class ServingSerializer(serializers.Serializer):
    candidates = serializers.IntegerField(min_value=1, max_value=10000, default=1000)
    fallbacks = serializers.ListField(child=serializers.ChoiceField(choices=FALLBACKS),
                                      default=["content_based", "popularity"])


class MinimumsSerializer(serializers.Serializer):
    users = serializers.IntegerField(min_value=0, default=20)
    items = serializers.IntegerField(min_value=0, default=10)
    interactions = serializers.IntegerField(min_value=0, default=200)


class PromotionSerializer(serializers.Serializer):
    metric = serializers.CharField(default="ndcg@10")
    min_improvement_over_active = serializers.FloatField(default=0.0)
    min_improvement_over_popularity = serializers.FloatField(default=0.0)
    max_popularity_concentration = serializers.FloatField(min_value=0, max_value=1, default=0.95)
    required_checks = serializers.ListField(child=serializers.CharField(), default=list)
    auto_promote = serializers.BooleanField(default=True)

    def validate_metric(self, value: str) -> str:
        name, _, k = value.partition("@")
        if name not in METRICS or not k.isdigit() or int(k) < 1:
            raise serializers.ValidationError(
                f"expected <metric>@<k> with metric one of {', '.join(METRICS)}, e.g. ndcg@10")
        return value


class PlanConfigSerializer(serializers.Serializer):
    model = serializers.CharField(default="implicit_matrix_factorization_v1")
    events = serializers.DictField(child=serializers.FloatField(min_value=0), default=dict(
        meaningful_click=1, add_to_cart=3, purchase=5, watch_complete=4))
    negative_events = serializers.ListField(child=serializers.CharField(),
                                            default=["hide", "dislike"])
    filters = serializers.ListField(child=serializers.ChoiceField(choices=FILTERS),
                                    default=list(FILTERS))
    window = WindowSerializer(default=lambda: WindowSerializer().to_internal_value({}))
    transform = TransformSerializer(default=lambda: TransformSerializer().to_internal_value({}))
    training = TrainingSerializer(default=lambda: TrainingSerializer().to_internal_value({}))
    split = SplitSerializer(default=lambda: SplitSerializer().to_internal_value({}))
    evaluation = EvaluationSerializer(
        default=lambda: EvaluationSerializer().to_internal_value({}))
    serving = ServingSerializer(default=lambda: ServingSerializer().to_internal_value({}))
    minimums = MinimumsSerializer(default=lambda: MinimumsSerializer().to_internal_value({}))
    promotion = PromotionSerializer(default=lambda: PromotionSerializer().to_internal_value({}))
    schedule = serializers.CharField(allow_null=True, allow_blank=True, default=None)

    def validate_events(self, value: dict) -> dict:
        if not value:
            raise serializers.ValidationError("name at least one positive event type")
        return value

    def validate_schedule(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            crontab_validator(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(
                f"not a 5-field cron expression: {value!r} ({'; '.join(exc.messages)})") from exc
        return value

    def validate(self, attrs: dict) -> dict:
        overlap = set(attrs["events"]) & set(attrs["negative_events"])
        if overlap:
            raise serializers.ValidationError(
                {"negative_events": f"also listed as positive events: {sorted(overlap)}"})
        return attrs


def validate_plan_config(raw: Any) -> dict:
    """The normalised configuration (defaults filled in), or a DRF ValidationError whose
    detail names each bad field by its path."""
    if not isinstance(raw, dict):
        raise serializers.ValidationError({"config": "must be a JSON object"})
    serializer = PlanConfigSerializer(data=raw)
    serializer.is_valid(raise_exception=True)
    return _plain(serializer.validated_data)


def default_plan_config(**overrides: Any) -> dict:
    return validate_plan_config(overrides)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
