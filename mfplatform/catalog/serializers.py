from rest_framework import serializers

from mfplatform.catalog.models import EndUser, EventType, Item
from mfplatform.input_guard import StorableJSONField


class ItemSerializer(serializers.ModelSerializer):
    available = serializers.BooleanField(source="is_available", required=False)
    attributes = StorableJSONField(required=False, objects_only=True)

    class Meta:
        model = Item
        fields = ["external_id", "title", "category", "tags", "attributes", "available",
                  "is_placeholder", "banned_at", "deleted_at", "created_at", "updated_at"]
        read_only_fields = ["external_id", "is_placeholder", "deleted_at", "created_at",
                            "updated_at"]


class EndUserSerializer(serializers.ModelSerializer):
    attributes = StorableJSONField(required=False, objects_only=True)

    class Meta:
        model = EndUser
        fields = ["external_id", "consent", "is_internal", "is_bot", "attributes", "created_at",
                  "updated_at"]
        read_only_fields = ["external_id", "created_at", "updated_at"]


class EventTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = EventType
        fields = ["name", "kind"]

    def validate_name(self, value):
        tenant = self.context["tenant"]
        clash = EventType.objects.filter(tenant=tenant, name=value)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(f"event type {value!r} already exists")
        return value


class IngestResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    written = serializers.BooleanField()
    rejected = serializers.ListField(child=serializers.DictField())


class EventInSerializer(serializers.Serializer):
    """One event (the endpoint takes a JSON list of these; documentation only)."""

    user = serializers.CharField()
    item = serializers.CharField()
    type = serializers.CharField()
    value = serializers.FloatField(required=False)
    timestamp = serializers.CharField(required=False, help_text="ISO 8601 or unix seconds")
    event_id = serializers.CharField(required=False)
    recommendation_id = serializers.UUIDField(
        required=False, help_text="the response that showed the item (attribution); else the "
                                  "user's latest impression of the item within the window")
    position = serializers.IntegerField(required=False, min_value=1, max_value=1000,
                                        help_text="the item's position in that response")
