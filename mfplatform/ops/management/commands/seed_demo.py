import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from mfplatform.ops.demo import ensure_demo


class Command(BaseCommand):
    help = ("Create (or reuse) the demo tenant: admin login, API key, data, a trained and "
            "promoted model; print how to use it. DATA=<MovieLens folder> loads that instead "
            "of synthetic data.")

    def add_arguments(self, parser):
        parser.add_argument("--data", default=os.environ.get("DATA") or None,
                            help="folder with MovieLens ratings.csv and movies.csv")
        parser.add_argument("--password", default=os.environ.get("DEMO_ADMIN_PASSWORD",
                                                                  "demo-admin-pw"))
        parser.add_argument("--base-url", default=None)
        parser.add_argument("--users", type=int, default=2000)
        parser.add_argument("--items", type=int, default=400)
        parser.add_argument("--events", type=int, default=60_000)

    def handle(self, data, password, base_url, users, items, events, **options):
        folder = Path(data) if data else None
        if folder is not None and not (folder / "ratings.csv").exists():
            raise CommandError(f"{folder} has no ratings.csv (MovieLens format expected)")
        demo = ensure_demo(password, folder, users=users, items=items, events=events,
                           echo=self.stdout.write)
        base = base_url or f"http://127.0.0.1:{os.environ.get('PORT', '8000')}"
        key = demo.api_key
        self.stdout.write(f"""
Demo tenant '{demo.tenant.slug}' is ready: model v{demo.version.version} ({demo.version.status}).

  Admin:   {base}/admin/   login {demo.admin} / {demo.password}
  Report:  {base}/admin/registry/modelversion/{demo.version.pk}/report/
  API key: {key}
  API docs: {base}/api/docs/

Send an event:
  curl -s -X POST {base}/api/v1/events -H "Authorization: Bearer {key}" \\
       -H "Content-Type: application/json" \\
       -d '[{{"user": "{demo.sample_user}", "item": "{demo.sample_item}", "type": "purchase"}}]'

Get recommendations:
  curl -s "{base}/api/v1/recommendations?user={demo.sample_user}&k=5&explain=true" \\
       -H "Authorization: Bearer {key}"

Get similar items:
  curl -s "{base}/api/v1/items/{demo.sample_item}/similar?k=5" \\
       -H "Authorization: Bearer {key}"
""")
