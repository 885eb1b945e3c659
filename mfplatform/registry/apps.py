from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "mfplatform.registry"
    label = "registry"
