"""Item vectors placed after training (new items, by their content) are flagged cold, with
how they were placed. Database defaults: publication's SQL does not name the columns."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0005_partition_vectors_by_model_version'),
    ]

    operations = [
        migrations.AddField(
            model_name='itemvector',
            name='cold',
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.AddField(
            model_name='itemvector',
            name='cold_placement',
            field=models.CharField(blank=True, db_default='', default='', max_length=16),
        ),
    ]
