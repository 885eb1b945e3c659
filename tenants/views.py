from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.api import request_tenant


class WhoAmIView(APIView):
    """The tenant and scopes of the calling key: a cheap way to check a key works."""

    required_scope = "any"

    def get(self, request):
        tenant = request_tenant(request)
        key = request.auth
        return Response({"tenant": tenant.slug, "name": tenant.name, "key": key.prefix,
                         "scopes": key.scopes})
