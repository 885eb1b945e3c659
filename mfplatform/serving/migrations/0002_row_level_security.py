from django.db import migrations

from tenants.rls import enable_rls


class Migration(migrations.Migration):
    dependencies = [("serving", "0001_initial")]

    operations = [
        enable_rls("serving_eligibilityrule"),
        enable_rls("serving_editorialpick"),
        enable_rls("serving_impression"),
        enable_rls("serving_precomputedrecommendation"),
    ]
