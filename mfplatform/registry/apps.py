from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "mfplatform.registry"
    label = "registry"

    def ready(self) -> None:
        from mfplatform.registry.runs import discard_failed_version
        from mfplatform.training.signals import run_failed

        run_failed.connect(discard_failed_version, dispatch_uid="registry.discard_failed_version")
