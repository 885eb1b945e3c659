"""Training plan configuration: its JSON form, defaults and validation (field-path errors).

    {"events": {"meaningful_click": 1, "add_to_cart": 3, "purchase": 5, "watch_complete": 4},
     "filters": ["exclude_bot", "exclude_internal", "valid_item", "consent_required"],
     "window": {"days": 90, "recency_half_life_days": 30},
     "training": {"strategy": "als", "factors": 64, "regularization": "auto", "alpha": 2,
                  "iterations": 15,
                  "tune": {"trials": 12, "time_budget_s": 600, "metric": "ndcg@10",
                           "early_stopping": true}},
     "split": {"kind": "temporal", "test_fraction": 0.2},
     "evaluation": {"k": [10, 20, 50]},
     "minimums": {"users": 20, "items": 10, "interactions": 200},
     "promotion": {...}, "schedule": "0 3 * * *"}

Unknown keys are refused at every level (a typo such as "evnts" would otherwise train on the
default events) and every number is bounded. `model` and `serving` were accepted once but
controlled nothing; stored configurations that still hold them load with them dropped.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django_celery_beat.validators import crontab_validator
from rest_framework import serializers

import mfengine
from mfengine.evaluation import RANKING_KEYS
from mfengine.report import to_plain
from mfengine.tuning import DEFAULT_SPACES

FILTERS = ("exclude_bot", "exclude_internal", "valid_item", "consent_required")
METRICS = RANKING_KEYS  # what the evaluation computes per k
# Keys of older configurations that never controlled anything: dropped when a config is read
# (`serving` held other keys once: those are dropped, the section's own kept).
RETIRED_KEYS = ("model",)
MAX_EVENT_WEIGHT = 1000.0


class StrictSerializer(serializers.Serializer):
    """A configuration section: a key it does not know is an error named by its path."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {key: [f"unknown key; expected one of {', '.join(self.fields)}"]
                     for key in unknown})
        return super().to_internal_value(data)


class WindowSerializer(StrictSerializer):
    days = serializers.FloatField(min_value=1, max_value=3650, allow_null=True, default=90)
    recency_half_life_days = serializers.FloatField(min_value=0.1, max_value=3650,
                                                    allow_null=True, default=None)


class TransformSerializer(StrictSerializer):
    log1p = serializers.BooleanField(default=True)
    use_values = serializers.BooleanField(default=False)
    max_events_per_user = serializers.IntegerField(min_value=1, max_value=10**9, allow_null=True,
                                                   default=None)
    max_events_per_item = serializers.IntegerField(min_value=1, max_value=10**9, allow_null=True,
                                                   default=None)
    max_strength = serializers.FloatField(min_value=0, max_value=1e6, allow_null=True,
                                          default=None)


def _validate_metric_at_k(value: str) -> str:
    name, _, k = value.partition("@")
    if name not in METRICS or not k.isdigit() or int(k) < 1:
        raise serializers.ValidationError(
            f"expected <metric>@<k> with metric one of {', '.join(METRICS)}, e.g. ndcg@10")
    return value


class TuneSerializer(StrictSerializer):
    """`training.tune`: a hyperparameter search inside the run (mfengine.tuning), on a
    validation split of the training period that mirrors the plan's split; the search's choice
    replaces the configured values only when it beats them by more than noise."""

    trials = serializers.IntegerField(min_value=2, max_value=200, default=12)
    time_budget_s = serializers.FloatField(min_value=1, max_value=86400, default=600)
    metric = serializers.CharField(default="ndcg@10")
    # Successive halving on iterations: weak trials stop after a ninth, then a third, of them.
    early_stopping = serializers.BooleanField(default=True)

    def validate_metric(self, value: str) -> str:
        return _validate_metric_at_k(value)


class NumberOrAutoField(serializers.FloatField):
    """A bounded number, or "auto": the strategy's data-scaled default (ALS)."""

    def to_internal_value(self, data):
        if data == "auto":
            return data
        return super().to_internal_value(data)

    def run_validators(self, value):
        if value != "auto":  # the bounds are for numbers
            super().run_validators(value)

    def to_representation(self, value):
        return value if value == "auto" else super().to_representation(value)


class TrainingSerializer(StrictSerializer):
    strategy = serializers.CharField(default="als")
    factors = serializers.IntegerField(min_value=2, max_value=1024, default=64)
    # Unset: the strategy's own default (for ALS "auto", scaled to the data; a number is a
    # fixed penalty, unless regularization_scaling says how to scale it).
    regularization = NumberOrAutoField(min_value=0, max_value=1e4, required=False)
    regularization_scaling = serializers.ChoiceField(
        choices=["singular_value", "count", "none"], required=False)
    alpha = serializers.FloatField(min_value=0, max_value=1e4, required=False)
    iterations = serializers.IntegerField(min_value=1, max_value=1000, default=15)
    learning_rate = serializers.FloatField(min_value=0, max_value=10, required=False)
    random_state = serializers.IntegerField(min_value=0, max_value=2**32 - 1, default=0)
    # Absent or null: no search, the values above are trained as they are.
    tune = TuneSerializer(required=False, allow_null=True)

    def validate_strategy(self, value: str) -> str:
        names = mfengine.available()
        if value not in names:
            raise serializers.ValidationError(
                f"unknown strategy {value!r}; available: {', '.join(names)}")
        return value

    def validate(self, attrs: dict) -> dict:
        params = {k: v for k, v in attrs.items() if k not in ("strategy", "tune")}
        try:
            model = mfengine.create(attrs["strategy"], **params)
        except (TypeError, ValueError) as exc:
            raise serializers.ValidationError(str(exc)) from exc
        if params.get("regularization") == "auto" and type(model)().get_params().get(
                "regularization") != "auto":
            raise serializers.ValidationError({"regularization": [
                f"'auto' is a data-scaled default strategy {attrs['strategy']!r} does not "
                "have; give a number"]})
        rule = getattr(model, "regularization_rule", None)
        if rule is not None:
            try:  # ALS: the pair (regularization, regularization_scaling) must make sense
                rule()
            except ValueError as exc:
                raise serializers.ValidationError({"regularization": [str(exc)]}) from exc
        if attrs.get("tune") and attrs["strategy"] not in DEFAULT_SPACES:
            raise serializers.ValidationError({"tune": [
                f"no search space for strategy {attrs['strategy']!r}; tuning supports "
                f"{', '.join(sorted(DEFAULT_SPACES))}"]})
        return attrs


class SplitSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=["temporal", "global"], default="temporal")
    test_fraction = serializers.FloatField(min_value=0.01, max_value=0.9, default=0.2)
    test_days = serializers.FloatField(min_value=0.01, max_value=3650, default=7)
    positive_threshold = serializers.FloatField(min_value=-1e6, max_value=1e6, allow_null=True,
                                                default=None)


class EvaluationSerializer(StrictSerializer):
    k = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=1000),
                              min_length=1, default=[10, 20, 50])
    # Users evaluated at most (a seeded sample beyond this): bounds evaluation time.
    max_users = serializers.IntegerField(min_value=100, max_value=10**9, allow_null=True,
                                         default=5000)


class MinimumsSerializer(StrictSerializer):
    users = serializers.IntegerField(min_value=0, max_value=10**12, default=20)
    items = serializers.IntegerField(min_value=0, max_value=10**12, default=10)
    interactions = serializers.IntegerField(min_value=0, max_value=10**12, default=200)


class PromotionSerializer(StrictSerializer):
    metric = serializers.CharField(default="ndcg@10")
    # Relative improvements: -1 (anything) to +10 (eleven times better).
    min_improvement_over_active = serializers.FloatField(min_value=-1, max_value=10, default=0.0)
    min_improvement_over_popularity = serializers.FloatField(min_value=-1, max_value=10,
                                                             default=0.0)
    max_popularity_concentration = serializers.FloatField(min_value=0, max_value=1, default=0.95)
    required_checks = serializers.ListField(child=serializers.CharField(), default=list)
    auto_promote = serializers.BooleanField(default=True)

    def validate_metric(self, value: str) -> str:
        return _validate_metric_at_k(value)


class ExplorationSerializer(StrictSerializer):
    """`serving.exploration`: a share of each list's slots reserved for new items (placed in
    the model by their content) at most `max_item_age_days` old: those scoring best with the
    user's vector (at random without one), put at places drawn from a generator seeded by
    the recommendation id; labelled "exploration"."""

    share = serializers.FloatField(min_value=0, max_value=0.5, default=0.05)
    max_item_age_days = serializers.FloatField(min_value=0.01, max_value=3650, default=30)


class ServingSerializer(StrictSerializer):
    # Absent or null: no exploration.
    exploration = ExplorationSerializer(required=False, allow_null=True, default=None)


class PlanConfigSerializer(StrictSerializer):
    events = serializers.DictField(child=serializers.FloatField(
        min_value=0, max_value=MAX_EVENT_WEIGHT), default=dict(
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
    minimums = MinimumsSerializer(default=lambda: MinimumsSerializer().to_internal_value({}))
    promotion = PromotionSerializer(default=lambda: PromotionSerializer().to_internal_value({}))
    serving = ServingSerializer(default=lambda: ServingSerializer().to_internal_value({}))
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
        evaluated = attrs["evaluation"]["k"]
        metric_k = int(attrs["promotion"]["metric"].partition("@")[2])
        if metric_k not in evaluated:
            raise serializers.ValidationError({"promotion": {"metric": [
                f"k={metric_k} is not evaluated; evaluation.k is {evaluated}"]}})
        tune = attrs["training"].get("tune")
        if tune and int(tune["metric"].partition("@")[2]) not in evaluated:
            raise serializers.ValidationError({"training": {"tune": {"metric": [
                f"k={tune['metric'].partition('@')[2]} is not evaluated; evaluation.k is "
                f"{evaluated}"]}}})
        return attrs


def validate_plan_config(raw: Any) -> dict:
    """The normalised configuration (defaults filled in), or a DRF ValidationError whose
    detail names each bad field by its path."""
    if not isinstance(raw, dict):
        raise serializers.ValidationError({"config": "must be a JSON object"})
    serializer = PlanConfigSerializer(data=raw)
    serializer.is_valid(raise_exception=True)
    return to_plain(serializer.validated_data)


def default_plan_config(**overrides: Any) -> dict:
    return validate_plan_config(overrides)


def stored_plan_config(stored: dict) -> dict:
    """A configuration as stored, without the keys retired since it was written."""
    config = {key: value for key, value in stored.items() if key not in RETIRED_KEYS}
    serving = config.get("serving")
    if isinstance(serving, dict):
        kept = {key: value for key, value in serving.items() if key in ServingSerializer().fields}
        if kept:
            config["serving"] = kept
        else:
            config.pop("serving")
    return config


# Values that are replaced whole by a PATCH: a mapping of event names is one setting.
_REPLACED_WHOLE = ("events",)


def merge_plan_config(current: dict, patch: Any) -> Any:
    """`patch` laid over `current` section by section (a PATCH sends only what changes);
    lists and the `events` mapping are replaced whole."""
    if not isinstance(patch, dict):
        return patch
    merged = stored_plan_config(current)
    for key, value in patch.items():
        section = merged.get(key)
        if isinstance(value, dict) and isinstance(section, dict) and key not in _REPLACED_WHOLE:
            merged[key] = {**section, **value}
        else:
            merged[key] = value
    return merged



def config_reference() -> list[tuple[str, str, str]]:
    """(path, what it takes, default) of every plan field, read from the serializers that
    validate them: the plan editor's help can never drift from the validation."""
    return _reference(PlanConfigSerializer(), "")


def _reference(serializer: serializers.Serializer, prefix: str) -> list[tuple[str, str, str]]:
    rows = []
    for name, field in serializer.fields.items():
        path = f"{prefix}{name}"
        if isinstance(field, serializers.Serializer):
            rows += _reference(field, path + ".")
            continue
        rows.append((path, _takes(field), _default(field)))
    return rows


def _takes(field: serializers.Field) -> str:
    if isinstance(field, serializers.ChoiceField):
        return "one of " + ", ".join(map(str, field.choices))
    if isinstance(field, serializers.ListField | serializers.DictField):
        kind = "list of " if isinstance(field, serializers.ListField) else "{name: "
        inner = _takes(field.child)
        return kind + inner + ("}" if kind.startswith("{") else "")
    kind = {serializers.BooleanField: "true/false", serializers.IntegerField: "integer",
            serializers.FloatField: "number", serializers.CharField: "text",
            NumberOrAutoField: 'number or "auto"'}.get(
        type(field), type(field).__name__.removesuffix("Field").lower() or "value")
    bounds = []
    if getattr(field, "min_value", None) is not None:
        bounds.append(f">= {field.min_value}")
    if getattr(field, "max_value", None) is not None:
        bounds.append(f"<= {field.max_value}")
    if getattr(field, "allow_null", False):
        bounds.append("or null")
    return " ".join([kind, *bounds])


def _default(field: serializers.Field) -> str:
    default = field.default
    if default is serializers.empty:
        return "required" if field.required else "the strategy's own"
    return json.dumps(to_plain(default() if callable(default) else default))
