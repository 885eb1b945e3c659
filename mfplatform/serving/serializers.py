from rest_framework import serializers

from mfplatform.input_guard import StorableJSONField
from mfplatform.serving.models import EligibilityRule
from mfplatform.serving.rules import RuleParamsError, make_rule, rule_kinds
from mfplatform.serving.service import MAX_K


def _csv(value) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value if str(v)]
    return [v for v in str(value or "").split(",") if v]


class RecommendationQuerySerializer(serializers.Serializer):
    user = serializers.CharField(required=False, allow_blank=True, max_length=255,
                                 help_text="the user's external id; required unless "
                                           "anonymous=true")
    anonymous = serializers.BooleanField(
        required=False, default=False,
        help_text="a request for nobody in particular (popularity, or the session's "
                  "recent_items): the explicit way to leave out `user`")
    k = serializers.IntegerField(min_value=1, max_value=MAX_K, default=10)
    recent_items = serializers.JSONField(required=False, default=list,
                                         help_text="comma-separated external ids (or a list)")
    exclude = serializers.JSONField(required=False, default=list)
    category = serializers.CharField(required=False, allow_blank=True)
    explain = serializers.BooleanField(required=False, default=False)
    precomputed = serializers.BooleanField(required=False, default=False)

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
                                  max_length=1000)
    require_user = False  # `users` or `user`, checked by the view


class EligibilityRuleSerializer(serializers.ModelSerializer):
    kind = serializers.CharField()
    params = StorableJSONField(required=False, objects_only=True)

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


class RecommendedItemSerializer(serializers.Serializer):
    item = serializers.CharField(help_text="the item's external id")
    score = serializers.FloatField()
    source = serializers.CharField(help_text="mf, content, editorial, popularity or a plugin")
    reason = serializers.CharField(required=False, help_text="with explain=true")


class ModelVersionRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    kind = serializers.CharField(required=False)


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
