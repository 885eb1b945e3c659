from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mfplatform.catalog.csv_import import (
    ITEM_COLUMNS,
    import_for_command,
    item_writer,
    parse_mapping,
)


class Command(BaseCommand):
    help = ("Import items from a CSV file, e.g. MovieLens movies: --map item=movieId,"
            "title=title,category=genres,tags=genres --tags-sep '|'")

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("file", type=Path)
        parser.add_argument("--map", required=True, dest="mapping",
                            help="<field>=<column>,... fields: item, title, category, tags")
        parser.add_argument("--tags-sep", default="|",
                            help="separator inside the tags column; a category column holding "
                                 "several values keeps the first")
        parser.add_argument("--partial", action="store_true")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, tenant, file, mapping, tags_sep, partial, no_progress, **options):
        try:
            columns = parse_mapping(mapping, ITEM_COLUMNS)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if "item" not in columns:
            raise CommandError("map the item id column: --map item=<column>,...")

        def writer(tenant_obj):
            return item_writer(tenant_obj, tags_sep)

        import_for_command(self, tenant, file, columns, writer, partial, not no_progress)
