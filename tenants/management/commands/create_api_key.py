import json

from django.core.management.base import BaseCommand, CommandError

from tenants.models import Tenant
from tenants.services import create_api_key, parse_scopes


class Command(BaseCommand):
    help = "Issue an API key for a tenant with the given scopes (printed once)."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--scopes", default="ingest,recommend,manage",
                            help="comma-separated: ingest, recommend, manage")
        parser.add_argument("--name", default="default")
        parser.add_argument("--json", action="store_true", help="print JSON only")

    def handle(self, slug, scopes, name, **options):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            raise CommandError(f"no tenant {slug!r}")
        try:
            scope_list = parse_scopes(scopes)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        key, raw = create_api_key(tenant, scope_list, name=name)
        if options["json"]:
            self.stdout.write(json.dumps({"tenant": tenant.slug, "api_key": raw,
                                          "scopes": key.scopes}))
        else:
            self.stdout.write(f"API key for {tenant.slug} ({', '.join(key.scopes)}), "
                              f"shown once: {raw}")
