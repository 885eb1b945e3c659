from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "mfplatform.experiments"
    label = "experiments"
    verbose_name = "Online experiments"
