from django.apps import AppConfig
from django.conf import settings


def precompute_on_activation(sender, version, **kwargs) -> None:
    """Receiver of the registry's version_activated (sent once the switch has committed):
    precompute the new active version's top-N lists in the worker."""
    from mfplatform.registry.models import ModelKind
    from mfplatform.serving.tasks import precompute

    if settings.SERVING_PRECOMPUTE and version.kind == ModelKind.MF:
        precompute.delay(version.tenant_id, version.pk)


def precompute_on_placement(sender, version, **kwargs) -> None:
    """Receiver of the registry's items_placed: the active version's lists again, with the
    new items placed by their content in them."""
    from mfplatform.serving.tasks import precompute

    if settings.SERVING_PRECOMPUTE:
        precompute.delay(version.tenant_id, version.pk)


class ServingConfig(AppConfig):
    name = "mfplatform.serving"
    label = "serving"

    def ready(self) -> None:
        from mfplatform.registry.signals import items_placed, version_activated

        version_activated.connect(precompute_on_activation,
                                  dispatch_uid="serving.precompute_on_activation")
        items_placed.connect(precompute_on_placement,
                             dispatch_uid="serving.precompute_on_placement")
