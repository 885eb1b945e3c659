"""Users the model has not seen: the vector a request is served with, and the source its
items are labelled with.

- "mf": the user's stored vector, or one folded in from their events (state.user_vector);
- "mf_onboarding": a named user with no events yet, placed by the items they chose
  (`recent_items`, folded in);
- "mf_segment": a user with no events and no session but a `segment` attribute, placed at
  the mean vector of that segment's users (computed at training, mfengine.cold);
- otherwise no vector: the fallbacks (popularity) answer.

Only a user without any event costs a statement more (their attributes): warm requests
never reach it."""

from __future__ import annotations

import numpy as np

from mfplatform.catalog.models import EndUser
from mfplatform.serving.bundle import ModelBundle
from mfplatform.serving.state import RequestState, user_vector

ONBOARDING_SOURCE = "mf_onboarding"
SEGMENT_SOURCE = "mf_segment"
SEGMENT_ATTRIBUTE = "segment"


def served_vector(bundle: ModelBundle | None, state: RequestState, session: list[int],
                  named: bool) -> tuple[np.ndarray | None, str]:
    """(The user's vector or None, the source of the items it finds). `named`: the request
    names a user (known or not), as opposed to an anonymous one."""
    vector = user_vector(bundle, state, session)
    without_events = state.stored_vector is None and not state.history
    if vector is not None:
        return vector, ONBOARDING_SOURCE if named and without_events and session else "mf"
    if without_events and state.user is not None and bundle is not None and (
            bundle.model is not None and bundle.segments is not None):
        segment = segment_vector(bundle, state.user)
        if segment is not None:
            return segment, SEGMENT_SOURCE
    return None, "mf"


def segment_vector(bundle: ModelBundle, user: EndUser) -> np.ndarray | None:
    """The mean vector of the user's segment's users, None without a known segment."""
    segment = (EndUser.objects.filter(tenant_id=user.tenant_id, pk=user.pk)
               .values_list(f"attributes__{SEGMENT_ATTRIBUTE}", flat=True).first())
    if segment is None or isinstance(segment, dict | list):
        return None
    return bundle.segments.vector(str(segment))


def segment_reason(_item) -> str:
    return "liked by users of your segment"
