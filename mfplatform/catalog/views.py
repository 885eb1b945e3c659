from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ParseError
from rest_framework.response import Response
from rest_framework.views import APIView

from mfplatform import input_guard
from mfplatform.catalog import events, ingest, metrics
from mfplatform.catalog.models import EndUser, EventType, Item
from mfplatform.catalog.serializers import (
    EndUserSerializer,
    EventInSerializer,
    EventTypeSerializer,
    IngestResultSerializer,
    ItemSerializer,
)
from tenants.api import TenantScopedMixin, request_tenant

PARTIAL = OpenApiParameter("partial", bool, description="store the good rows, report the bad")


# A bulk body is read here rather than by DRF's parser, which holds every body to Django's
# DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB: 10,000 described items exceed it); this is the bound.
MAX_BODY_BYTES = 64 * 2**20


def _too_large(detail: str) -> Response:
    return Response({"detail": detail, "code": "batch_too_large"},
                    status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _json_body(request):
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        return None, _too_large(f"at most {MAX_BODY_BYTES // 2**20} MB per request")
    try:
        return input_guard.loads(request._request.read(MAX_BODY_BYTES + 1),
                                 parse_constant=_reject_constant), None
    except ValueError as exc:  # JSONDecodeError and bad encodings are ValueErrors
        raise ParseError(f"JSON parse error - {exc}") from exc


def _bulk_response(run, request, kind: str):
    """Run a bulk service on the request's JSON list: 413 over the limit, 400 when rows are
    bad (nothing written unless ?partial=true), else 200 with counts."""
    data, refused = _json_body(request)
    if refused is not None:
        return refused
    try:
        rows = ingest.check_batch(data)
    except ingest.BatchTooLarge as exc:
        return _too_large(str(exc))
    except ValueError as exc:
        raise ParseError(str(exc)) from exc
    partial = request.query_params.get("partial", "").lower() in ("1", "true", "yes")
    tenant = request_tenant(request)
    result = run(tenant, rows, partial=partial)
    metrics.record_batch(tenant.slug, kind, len(rows), result)
    body = result.as_dict()
    if result.rejected and not partial:
        return Response({"detail": f"{result.rejected_rows} of {len(rows)} rows are invalid; "
                                   f"nothing was stored", "code": "invalid_rows",
                         "errors": body["rejected"], **body},
                        status=status.HTTP_400_BAD_REQUEST)
    return Response(body, status=status.HTTP_200_OK)


class ExternalIdLookup:
    lookup_field = "external_id"
    lookup_value_regex = "[^/]+"


def _documented_lookup(name: str, description: str):
    """The detail routes' path parameter, described (the model field has no help text)."""
    parameter = OpenApiParameter(name, str, OpenApiParameter.PATH, description=description)

    def decorate(viewset):
        return extend_schema_view(**{
            action: extend_schema(parameters=[parameter]) for action in (
                "retrieve", "update", "partial_update", "destroy")
            if hasattr(viewset, action)})(viewset)
    return decorate


@_documented_lookup("external_id", "the item's id in the tenant's own system")
@extend_schema_view(list=extend_schema(parameters=[
    OpenApiParameter("category", str, description="only items of this category"),
    OpenApiParameter("available", bool, description="only available (true) or unavailable "
                                                    "(false) items"),
    OpenApiParameter("deleted", bool, description="true: include soft-deleted items")]))
class ItemViewSet(ExternalIdLookup, TenantScopedMixin, mixins.ListModelMixin,
                  mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                  mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The catalogue. POST a JSON list (<= 10,000) to create or update items by external id."""

    model = Item
    serializer_class = ItemSerializer
    required_scope = "ingest"

    def get_queryset(self):
        queryset = super().get_queryset()
        params = self.request.query_params
        if params.get("category"):
            queryset = queryset.filter(category=params["category"])
        if params.get("available") in ("true", "false"):
            queryset = queryset.filter(is_available=params["available"] == "true")
        if params.get("deleted") != "true":
            queryset = queryset.filter(deleted_at__isnull=True)
        return queryset

    @extend_schema(request=ItemSerializer(many=True), parameters=[PARTIAL],
                   responses=IngestResultSerializer)
    def create(self, request):
        return _bulk_response(ingest.upsert_items, request, "item")

    def perform_destroy(self, instance):
        # Soft delete: history and old model versions keep referring to the item.
        instance.deleted_at = timezone.now()
        instance.is_available = False
        instance.save(update_fields=["deleted_at", "is_available", "updated_at"])


@_documented_lookup("external_id", "the user's id in the tenant's own system")
class EndUserViewSet(ExternalIdLookup, TenantScopedMixin, mixins.ListModelMixin,
                     mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                     mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The tenant's end users. DELETE removes the user with their events and vectors."""

    model = EndUser
    serializer_class = EndUserSerializer
    required_scope = "ingest"

    @extend_schema(request=EndUserSerializer(many=True), parameters=[PARTIAL],
                   responses=IngestResultSerializer)
    def create(self, request):
        return _bulk_response(ingest.upsert_users, request, "user")

    def perform_destroy(self, instance):
        ingest.delete_end_user(request_tenant(self.request), instance)


@_documented_lookup("name", "the event type's name, e.g. view or purchase")
class EventTypeViewSet(TenantScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                       mixins.CreateModelMixin, mixins.UpdateModelMixin,
                       viewsets.GenericViewSet):
    """Event types: a name and a kind (positive, negative such as hide, policy such as
    report). How much a positive type counts in training is the plan's `events` mapping."""

    model = EventType
    serializer_class = EventTypeSerializer
    lookup_field = "name"
    lookup_value_regex = "[^/]+"
    required_scope = {"GET": "ingest", "*": "manage"}

    def get_queryset(self):
        if not getattr(self, "swagger_fake_view", False):
            events.ensure_default_event_types(request_tenant(self.request))
        return super().get_queryset()


class EventsView(APIView):
    """POST a JSON list of events (<= 10,000)."""

    required_scope = "ingest"

    @extend_schema(request=EventInSerializer(many=True), parameters=[PARTIAL],
                   responses=IngestResultSerializer)
    def post(self, request):
        return _bulk_response(events.ingest_events, request, "event")
