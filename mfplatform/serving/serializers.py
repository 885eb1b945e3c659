import copy
import re
from functools import cache

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers

from mfplatform.input_guard import StorableJSONField
from mfplatform.registry.models import ModelKind
from mfplatform.serving.models import EligibilityRule
from mfplatform.serving.rules import RuleParamsError, make_rule, rule_kinds
from mfplatform.serving.service import MAX_K


def _csv(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    return [v for v in str(value or "").split(",") if v]


@extend_schema_field({"type": "string"})
class IdListField(serializers.JSONField):
    """External ids as comma-separated text (a query string), or a JSON list in a body."""


@extend_schema_field({"oneOf": [{"type": "string"},
                                {"type": "array", "items": {"type": "string"}}]})
class IdListBodyField(IdListField):
    pass


class CopiedFieldsMixin:
    """Each instance gets a shallow copy of every declared field instead of DRF's deep copy,
    which re-runs every field's __init__: validating a serving query took 0.45 ms, 0.19 with
    shallow copies. These fields keep no per-request state: bind() gives the copy its own
    name and parent, and validation only reads the shared validators and messages. Fields
    with a child field or a nested serializer are deep-copied as before."""

    def get_fields(self):
        return {name: (copy.deepcopy(field) if hasattr(field, "child")
                       or isinstance(field, serializers.BaseSerializer) else _shallow(field))
                for name, field in self._declared_fields.items()}


def _shallow(field):
    clone = object.__new__(type(field))  # copy.copy, without its generic __reduce_ex__ path
    clone.__dict__.update(field.__dict__)
    return clone


class RecommendationQuerySerializer(CopiedFieldsMixin, serializers.Serializer):
    user = serializers.CharField(required=False, allow_blank=True, max_length=255,
                                 help_text="the user's external id; required unless "
                                           "anonymous=true")
    anonymous = serializers.BooleanField(
        required=False, default=False,
        help_text="a request for nobody in particular (popularity, or the session's "
                  "recent_items): the explicit way to leave out `user`")
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, default=10,
                                 help_text="how many items at most")
    recent_items = IdListField(required=False, default=list,
                               help_text="items of the current session, comma-separated "
                                         "external ids: they steer the recommendations")
    exclude = IdListField(required=False, default=list,
                          help_text="items never to return, comma-separated external ids")
    category = serializers.CharField(required=False, allow_blank=True,
                                     help_text="only items of this category")
    explain = serializers.BooleanField(required=False, default=False,
                                       help_text="true: a reason with every item")
    precomputed = serializers.BooleanField(
        required=False, default=False,
        help_text="true: the user's list computed after the last promotion, when there is "
                  "one (faster)")

    def validate_recent_items(self, value):
        return _csv(value)

    def validate_exclude(self, value):
        return _csv(value)

    require_user = True  # a batch (`users`) checks its own

    def validate(self, attrs):
        if self.require_user and attrs["anonymous"] == bool(attrs.get("user")):
            raise serializers.ValidationError({"user": [
                "give either user or anonymous=true" if attrs["anonymous"] else
                "required: the user's external id (or anonymous=true for a request "
                "without a user)"]})
        return attrs

    def unknown_keys(self, keys) -> dict[str, list[str]]:
        """Errors for request keys that are no parameter (a typo like `usr` would otherwise
        be a silent default)."""
        known = set(self.fields)
        return {key: [f"unknown parameter; known: {', '.join(sorted(known))}"]
                for key in sorted(set(keys) - known)}


class BatchRecommendationSerializer(RecommendationQuerySerializer):
    users = serializers.ListField(child=serializers.CharField(max_length=255), required=False,
                                  max_length=1000,
                                  help_text="the users' external ids (up to 1,000)")
    recent_items = IdListBodyField(required=False, default=list,
                                   help_text="items of the current session: a list of "
                                             "external ids or comma-separated text")
    exclude = IdListBodyField(required=False, default=list,
                              help_text="items never to return: a list of external ids or "
                                        "comma-separated text")
    require_user = False  # `users` or `user`, checked by the view


class RuleKindField(serializers.CharField):
    """A rule kind's name; documented as the enum of the kinds registered (plugins too)."""


class RuleKindFieldSchema(OpenApiSerializerFieldExtension):
    target_class = RuleKindField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "enum": sorted(rule_kinds()),
                "description": "the rule's kind: " + "; ".join(
                    f"{kind}: {cls.description}" for kind, cls in sorted(rule_kinds().items()))}


@extend_schema_field({"type": "object"})
class RuleParamsField(StorableJSONField):
    """A rule's parameters, whatever its kind (a PATCH may leave the kind out)."""


class EligibilityRuleSerializer(serializers.ModelSerializer):
    kind = RuleKindField()
    params = RuleParamsField(required=False, objects_only=True,
                             help_text="the kind's parameters (typed per kind in "
                                       "EligibilityRuleOfKind)")

    class Meta:
        model = EligibilityRule
        fields = ["id", "name", "kind", "params", "enabled", "order", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_kind(self, value):
        if value not in rule_kinds():
            raise serializers.ValidationError(
                f"unknown rule kind {value!r}; available: {', '.join(sorted(rule_kinds()))}")
        return value

    def validate_name(self, value):
        clash = EligibilityRule.objects.filter(tenant=self.context["tenant"], name=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"a rule named {value!r} exists")
        return value

    def validate(self, attrs):
        kind = attrs.get("kind", getattr(self.instance, "kind", None))
        params = attrs.get("params", getattr(self.instance, "params", {}))
        try:
            attrs["params"] = make_rule(kind, params).params
        except RuleParamsError as exc:
            raise serializers.ValidationError({"params": exc.errors}) from exc
        return attrs


def _kind_component(kind: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^0-9A-Za-z]+", kind) if part)


@cache
def _kind_serializer(kind: str, rule_class: type) -> type[EligibilityRuleSerializer]:
    """The schema of a rule of one kind: `kind` fixed, `params` typed by its params_schema."""
    name = _kind_component(kind)
    kind_field = extend_schema_field({"type": "string", "enum": [kind],
                                      "description": rule_class.description})(
        type(f"{name}KindField", (serializers.CharField,), {}))
    params_field = extend_schema_field(rule_class.schema())(
        type(f"{name}ParamsField", (StorableJSONField,), {}))
    return type(f"{name}RuleSerializer", (EligibilityRuleSerializer,), {
        "__module__": __name__, "kind": kind_field(),
        "params": params_field(required=False, objects_only=True),
        "Meta": EligibilityRuleSerializer.Meta})


def rule_kind_serializers() -> dict[str, type[EligibilityRuleSerializer]]:
    """One serializer per registered rule kind (plugins included), for the API schema: the
    rule's `kind` selects which `params` apply."""
    return {kind: _kind_serializer(kind, cls) for kind, cls in sorted(rule_kinds().items())}


def eligibility_rule_of_kind(many: bool = False) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(component_name="EligibilityRuleOfKind",
                                      serializers=rule_kind_serializers,
                                      resource_type_field_name="kind", many=many)


class RecommendedItemSerializer(serializers.Serializer):
    item = serializers.CharField(help_text="the item's external id")
    score = serializers.FloatField()
    source = serializers.CharField(help_text=(
        "mf, mf_cold (a new item placed by its content), mf_onboarding, mf_segment, "
        "exploration, content, editorial, popularity or a plugin"))
    reason = serializers.CharField(required=False, help_text="with explain=true")


class ModelVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ModelKind.choices, required=False)


class ExperimentRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class RecommendationsSerializer(serializers.Serializer):
    recommendation_id = serializers.UUIDField(
        help_text="send it back with the events this response led to (attribution)")
    experiment = ExperimentRefSerializer(allow_null=True,
                                         help_text="the experiment running on this surface")
    variant = serializers.CharField(allow_null=True, help_text="the user's variant in it")
    user = serializers.CharField(allow_null=True)
    personalised = serializers.BooleanField()
    model_version = ModelVersionRefSerializer(allow_null=True)
    precomputed = serializers.BooleanField()
    rules = serializers.ListField(child=serializers.CharField())
    filtered = serializers.DictField(child=serializers.IntegerField())
    items = RecommendedItemSerializer(many=True)
    warnings = serializers.ListField(
        child=serializers.CharField(),
        help_text="what in the request named nothing of the tenant's (unknown user, items, "
                  "category)")


class BatchRecommendationsSerializer(serializers.Serializer):
    results = RecommendationsSerializer(many=True)


class SimilarItemsSerializer(serializers.Serializer):
    recommendation_id = serializers.UUIDField()
    experiment = ExperimentRefSerializer(allow_null=True)
    variant = serializers.CharField(allow_null=True)
    item = serializers.CharField()
    model_version = ModelVersionRefSerializer(allow_null=True)
    rules = serializers.ListField(child=serializers.CharField())
    items = RecommendedItemSerializer(many=True)
