from django.db import migrations

from tenants.rls import enable_rls


class Migration(migrations.Migration):
    dependencies = [("registry", "0002_initial")]

    operations = [
        enable_rls("registry_modelversion"),
        enable_rls("registry_itemvector"),
        enable_rls("registry_uservector"),
        enable_rls("registry_promotionlog"),
    ]
