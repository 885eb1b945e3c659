import json

from django.core.management.base import BaseCommand, CommandError
from django.db import IntegrityError

from tenants.models import Tenant
from tenants.services import create_tenant


class Command(BaseCommand):
    help = "Create a tenant with an all-scopes API key (printed once) and optionally its admin."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--name")
        parser.add_argument("--admin-email")
        parser.add_argument("--admin-password")
        parser.add_argument("--json", action="store_true", help="print JSON only")

    def handle(self, slug, name, admin_email, admin_password, **options):
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"tenant {slug!r} already exists")
        try:
            tenant, raw = create_tenant(slug, name=name, admin_email=admin_email,
                                        admin_password=admin_password)
        except IntegrityError as exc:
            raise CommandError(f"could not create tenant {slug!r}: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps({"tenant": tenant.slug, "api_key": raw}))
        else:
            self.stdout.write(f"Created tenant {tenant.slug}.\nAPI key (shown once): {raw}")

