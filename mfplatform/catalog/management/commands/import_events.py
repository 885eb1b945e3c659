from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mfplatform.catalog.csv_import import event_writer, import_for_command, parse_mapping
from mfplatform.catalog.event_validation import EVENT_FIELDS


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
        try:
            columns = parse_mapping(mapping, EVENT_FIELDS)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if not {"user", "item"} <= columns.keys():
            raise CommandError("map the user and item columns: --map user=<column>,"
                               "item=<column>,...")
        if "type" not in columns and not type:
            raise CommandError("give --type or map a type column")

        def writer(tenant_obj):
            return event_writer(tenant_obj, type, create_items)

        import_for_command(self, tenant, file, columns, writer, partial, not no_progress)
