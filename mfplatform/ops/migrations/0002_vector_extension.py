from django.db import migrations


class Migration(migrations.Migration):
    """pgvector. On the embedded server (and any server where the role is not a superuser),
    the bootstrap creates the extension first as superuser; this then passes as a no-op."""

    dependencies = [("ops", "0001_initial")]

    operations = [
        migrations.RunSQL("CREATE EXTENSION IF NOT EXISTS vector", migrations.RunSQL.noop),
    ]
