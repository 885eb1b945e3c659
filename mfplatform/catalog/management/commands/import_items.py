from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mfplatform.catalog.csv_import import import_for_command, parse_mapping
from mfplatform.catalog.ingest import upsert_items

ITEM_COLUMNS = {"item", "title", "category", "tags"}


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

        def convert(row: dict) -> dict:
            item = {"external_id": row["item"]}
            if "title" in row:
                item["title"] = row["title"]
            if "category" in row:
                item["category"] = row["category"].split(tags_sep)[0] if tags_sep else \
                    row["category"]
            if "tags" in row:
                item["tags"] = [t for t in row["tags"].split(tags_sep) if t] if tags_sep \
                    else [row["tags"]]
            return item

        def writer(tenant_obj):
            def write(chunk, partial_chunk):
                result = upsert_items(tenant_obj, [convert(row) for row in chunk.rows()],
                                      partial=partial_chunk)
                for error in result.rejected:  # report file line numbers, not positions
                    error.index = chunk.lines[error.index]
                return result
            return write, None

        import_for_command(self, tenant, file, columns, writer, partial, not no_progress)
