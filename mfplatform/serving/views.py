import time

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from mfplatform.serving import metrics
from mfplatform.serving.models import EligibilityRule
from mfplatform.serving.serializers import (
    BatchRecommendationSerializer,
    BatchRecommendationsSerializer,
    EligibilityRuleSerializer,
    RecommendationQuerySerializer,
    RecommendationsSerializer,
    SimilarItemsSerializer,
    eligibility_rule_of_kind,
)
from mfplatform.serving.service import SCOPE, Request, ServingError, recommend, similar_items
from tenants.api import TenantScopedMixin, request_tenant


def _request(data) -> Request:
    return Request(k=data["k"], recent_items=data["recent_items"], exclude=data["exclude"],
                   category=data.get("category") or None, explain=data["explain"],
                   precomputed=data["precomputed"])


class Timed:
    """Counts and times each call per tenant and endpoint (GET /metrics). Serving's routes
    confirm their API key in the request state's round trip (tenants.auth.confirm_key)."""

    endpoint = ""
    confirms_api_key = True

    def finalize_response(self, request, response, *args, **kwargs):
        tenant = getattr(request, "tenant", None)
        if tenant is not None and hasattr(request, "_started"):
            metrics.LATENCY.labels(tenant.slug, self.endpoint).observe(
                time.perf_counter() - request._started)
            metrics.REQUESTS.labels(tenant.slug, self.endpoint, response.status_code).inc()
        return super().finalize_response(request, response, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        request._started = time.perf_counter()
        super().initial(request, *args, **kwargs)


class RecommendationsView(Timed, APIView):
    """Recommendations for a user (GET) or a batch of users (POST)."""

    required_scope = SCOPE
    endpoint = "recommendations"

    @extend_schema(parameters=[RecommendationQuerySerializer],
                   responses=RecommendationsSerializer)
    def get(self, request):
        query = RecommendationQuerySerializer(data=request.query_params.dict())
        unknown = query.unknown_keys(request.query_params.keys())
        if unknown:
            raise ValidationError(unknown)
        query.is_valid(raise_exception=True)
        try:
            body = recommend(request_tenant(request), query.validated_data.get("user") or None,
                             _request(query.validated_data), api_key=request.auth)
        except ServingError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from exc
        return Response(body)

    @extend_schema(request=BatchRecommendationSerializer,
                   responses=BatchRecommendationsSerializer)
    def post(self, request):
        body = BatchRecommendationSerializer(data=request.data)
        unknown = body.unknown_keys(request.data.keys() if isinstance(request.data, dict)
                                    else ())
        if unknown:
            raise ValidationError(unknown)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        users = data.get("users") or ([data["user"]] if data.get("user") else [])
        if not users:
            raise ValidationError({"users": ["give users (a list) or user"]})
        tenant = request_tenant(request)
        return Response({"results": [recommend(tenant, user, _request(data),
                                               api_key=request.auth) for user in users]})


class SimilarItemsView(Timed, APIView):
    """Items similar to this one: nearest by the serving model's item vectors (inner
    product), then content-based and popularity (in the item's category) to fill `k`; the
    tenant's rules apply. 404 for an unknown item."""

    required_scope = SCOPE
    endpoint = "similar"

    @extend_schema(parameters=[
        OpenApiParameter("external_id", str, OpenApiParameter.PATH,
                         description="the item's id in the tenant's own system"),
        OpenApiParameter("k", int, description="how many similar items (default 10)"),
        OpenApiParameter("explain", bool, description="true: a reason with every item"),
        OpenApiParameter("user", str, description=(
            "the user it is shown to: assigns the request to a running similar-items "
            "experiment"))],
        responses=SimilarItemsSerializer)
    def get(self, request, external_id: str):
        try:
            k = int(request.query_params.get("k", 10))
        except ValueError as exc:
            raise ValidationError({"k": ["expected an integer"]}) from exc
        explain = request.query_params.get("explain", "").lower() in ("1", "true", "yes")
        user = request.query_params.get("user", "").strip() or None
        if user is not None and len(user) > 255:
            raise ValidationError({"user": ["at most 255 characters"]})
        try:
            body = similar_items(request_tenant(request), external_id, k, explain, user,
                                 api_key=request.auth)
        except ServingError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from exc
        if body is None:
            raise NotFound(f"no item {external_id!r}")
        return Response(body, status=status.HTTP_200_OK)


# Every rule is documented with its kind's typed params (EligibilityRuleOfKind); a PATCH may
# leave out the kind, so its body stays the general EligibilityRule.
@extend_schema_view(
    list=extend_schema(responses=eligibility_rule_of_kind(many=True)),
    retrieve=extend_schema(responses=eligibility_rule_of_kind()),
    create=extend_schema(request=eligibility_rule_of_kind(),
                         responses={201: eligibility_rule_of_kind()}),
    update=extend_schema(request=eligibility_rule_of_kind(),
                         responses=eligibility_rule_of_kind()),
    partial_update=extend_schema(responses=eligibility_rule_of_kind()))
class EligibilityRuleViewSet(TenantScopedMixin, viewsets.ModelViewSet):
    """Eligibility rules applied to every recommendation: a kind, its typed params (see
    EligibilityRuleOfKind), an order and an on/off switch."""

    model = EligibilityRule
    serializer_class = EligibilityRuleSerializer
    required_scope = "manage"
