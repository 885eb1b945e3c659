from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "mfplatform.serving"
    label = "serving"
