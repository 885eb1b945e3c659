from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "mfplatform.ops"
    label = "ops"
    verbose_name = "Operations"
