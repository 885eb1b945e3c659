from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mfplatform.catalog.csv_import import ImportFailed, parse_mapping, run_import
from mfplatform.catalog.ingest import EVENT_FIELDS, ingest_events
from tenants.context import tenant_context
from tenants.models import Tenant


class Command(BaseCommand):
    help = ("Import events from a CSV file, e.g. MovieLens ratings: --map user=userId,"
            "item=movieId,value=rating,timestamp=timestamp --type rating")

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("file", type=Path)
        parser.add_argument("--map", required=True, dest="mapping",
                            help="<field>=<column>,... fields: " + ", ".join(sorted(EVENT_FIELDS)))
        parser.add_argument("--type", help="event type for rows without a type column")
        parser.add_argument("--partial", action="store_true",
                            help="store the good rows and report the bad ones")
        parser.add_argument("--create-items", action="store_true",
                            help="unknown items become placeholders instead of errors")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, tenant, file, mapping, type, partial, create_items, no_progress,
               **options):
        tenant_obj = Tenant.objects.filter(slug=tenant).first()
        if tenant_obj is None:
            raise CommandError(f"no tenant {tenant!r}")
        if not file.exists():
            raise CommandError(f"no file {file}")
        try:
            columns = parse_mapping(mapping, EVENT_FIELDS)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if "type" not in columns and not type:
            raise CommandError("give --type or map a type column")

        def write(chunk, partial_chunk):
            return ingest_events(tenant_obj, chunk, partial=partial_chunk, default_type=type,
                                 indexed=True, allow_placeholders=create_items or None)

        with tenant_context(tenant_obj):
            try:
                summary = run_import(file, columns, write, partial, progress=not no_progress)
            except ImportFailed as failed:
                for line in failed.summary.lines():
                    self.stderr.write(line)
                raise CommandError(str(failed)) from None
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        for line in summary.lines():
            self.stdout.write(line)
