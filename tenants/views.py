from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.api import request_tenant


class WhoAmIView(APIView):
    """The tenant and scopes of the calling key: a cheap way to check a key works."""

    required_scope = "any"

    @extend_schema(responses=inline_serializer("TenantInfo", {
        "tenant": serializers.CharField(), "name": serializers.CharField(),
        "key": serializers.CharField(), "scopes": serializers.ListField(
            child=serializers.CharField())}))
    def get(self, request):
        tenant = request_tenant(request)
        key = request.auth
        return Response({"tenant": tenant.slug, "name": tenant.name, "key": key.prefix,
                         "scopes": key.scopes})
