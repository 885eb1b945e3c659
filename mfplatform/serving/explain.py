"""Why an item was recommended: one reason per source, computed only when asked for."""

from __future__ import annotations

import numpy as np

from mfplatform.serving.bundle import ModelBundle
from mfplatform.serving.items import load_items
from mfplatform.serving.rules import ItemInfo
from mfplatform.serving.selector import Pick, Reason
from mfplatform.serving.state import History
from tenants.models import Tenant

TASTE_PROFILE = "matches your taste profile"


def mf_reason(tenant: Tenant, bundle: ModelBundle, history: History, session: list[int]
              ) -> Reason:
    """The history (or session) item whose vector is nearest (cosine) to the recommended
    item's: "because you interacted with <its title>"."""
    pks = list(dict.fromkeys(session + [pk for pk, _t, _ts in history]))[:200]
    columns = bundle.columns(pks)
    known = columns >= 0
    if not known.any():
        return lambda item: TASTE_PROFILE
    factors = bundle.model.item_factors_
    mine = factors[columns[known]]
    mine = mine / np.maximum(np.linalg.norm(mine, axis=1, keepdims=True), 1e-9)
    mine_pks = np.asarray(pks)[known]
    names = load_items(tenant, mine_pks.tolist())

    def reason(item: ItemInfo) -> str:
        column = bundle.columns([item.id])[0]
        if column < 0:
            return TASTE_PROFILE
        vector = factors[column] / max(float(np.linalg.norm(factors[column])), 1e-9)
        nearest = int(mine_pks[int(np.argmax(mine @ vector))])
        source = names.get(nearest)
        label = (source.title or source.external_id) if source else str(nearest)
        return f"because you interacted with {label}"

    return reason


def give_reasons(picks: list[Pick], reason: Reason) -> None:
    """Reasons for the picks that have none yet."""
    for pick in picks:
        pick.reason = pick.reason or reason(pick.item)


# How a new item was placed in the model (mfengine.cold.PLACEMENTS) -> what the user reads.
COLD_ITEM_REASONS = {
    "attributes": "new item, placed by its attributes",
    "category": "new item, placed with its category",
    "catalogue": "new item, placed at the catalogue's average",
}


def cold_item_reason(placement: str) -> Reason:
    reason = COLD_ITEM_REASONS.get(placement, COLD_ITEM_REASONS["catalogue"])
    return lambda _item: reason


def similar_reason(label: str) -> Reason:
    return lambda _item: f"often liked together with {label}"


def content_reason(item: ItemInfo) -> str:
    return (f"matches your interest in {item.category}" if item.category
            else "similar to items you interacted with")


def editorial_reason(_item: ItemInfo) -> str:
    return "picked by the editors"


def category_popular_reason(item: ItemInfo) -> str:
    return f"popular in {item.category}"


def popular_reason(item: ItemInfo) -> str:
    return f"popular in {item.category}" if item.category else "popular right now"
