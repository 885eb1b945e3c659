"""What the registry tells the layers above it, so that it never imports them."""

from django.dispatch import Signal

# A model version became its plan's active version (sent once the switch has committed;
# argument: version). Serving precomputes its top-N lists on it.
version_activated = Signal()

# New items were placed by their content in an active version's vectors (registry.cold; sent
# once the placement has committed; argument: version). Serving precomputes its top-N lists
# again, so that they include them.
items_placed = Signal()
