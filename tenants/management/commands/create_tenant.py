import json
import secrets

from django.contrib.auth import get_user_model
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
        # A new admin without --admin-password gets a one-time password to log in and change;
        # an existing user keeps theirs.
        generated = None
        if (admin_email and not admin_password
                and not get_user_model().objects.filter(username=admin_email).exists()):
            generated = admin_password = secrets.token_urlsafe(12)
        try:
            tenant, raw = create_tenant(slug, name=name, admin_email=admin_email,
                                        admin_password=admin_password)
        except IntegrityError as exc:
            raise CommandError(f"could not create tenant {slug!r}: {exc}") from exc
        if options["json"]:
            out = {"tenant": tenant.slug, "api_key": raw}
            if generated:
                out["admin_password"] = generated
            self.stdout.write(json.dumps(out))
            return
        self.stdout.write(f"Created tenant {tenant.slug}.\nAPI key (shown once): {raw}")
        if generated:
            self.stdout.write(f"Admin login: {admin_email} / {generated} (shown once; "
                              "change it in the admin under your name)")

