"""What the registry tells the layers above it, so that it never imports them."""

from django.dispatch import Signal

# A model version became its plan's active version (sent once the switch has committed;
# argument: version). Serving precomputes its top-N lists on it.
version_activated = Signal()
