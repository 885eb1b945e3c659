from django.apps import AppConfig


def place_items_on_ingest(sender, tenant_id, **kwargs) -> None:
    """Receiver of the catalogue's items_written: new items get vectors in the active
    versions (debounced per tenant)."""
    from mfplatform.registry.cold import queue_placement

    queue_placement(tenant_id)


def place_items_on_activation(sender, version, **kwargs) -> None:
    """A newly active version was trained on the items known then: place the later ones."""
    from mfplatform.registry.cold import queue_placement

    queue_placement(version.tenant_id)


class RegistryConfig(AppConfig):
    name = "mfplatform.registry"
    label = "registry"

    def ready(self) -> None:
        from mfplatform.catalog.signals import items_written
        from mfplatform.registry.runs import discard_failed_version
        from mfplatform.registry.signals import version_activated
        from mfplatform.training.signals import run_failed

        run_failed.connect(discard_failed_version, dispatch_uid="registry.discard_failed_version")
        items_written.connect(place_items_on_ingest, dispatch_uid="registry.place_items_on_ingest")
        version_activated.connect(place_items_on_activation,
                                  dispatch_uid="registry.place_items_on_activation")
