"""What the catalogue tells the layers above it, so that it never imports them."""

from django.dispatch import Signal

# Sent once a batch that created or updated items has committed (argument: tenant_id). The
# registry places new items in the active model versions by their content.
items_written = Signal()
