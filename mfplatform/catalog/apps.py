from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "mfplatform.catalog"
    label = "catalog"
