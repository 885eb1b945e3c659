"""The rules applied to candidates: which rules hold for a request, what they know of the
user, and the selector that accepts candidates in order while they pass every rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.utils import timezone

from mfplatform.catalog.models import EndUser
from mfplatform.serving.items import load_items
from mfplatform.serving.models import EligibilityRule
from mfplatform.serving.rules import DEFAULT_KINDS, ItemInfo, Rule, RuleContext, make_rule
from mfplatform.serving.state import History
from tenants.models import Tenant

Reason = Callable[[ItemInfo], str]


def tenant_rules(tenant: Tenant, extra: list[Rule] = (),
                 configured: list[tuple[str, str, dict, bool]] | None = None) -> list[Rule]:
    """The default rules, replaced or disabled by the tenant's own of the same kind/name.
    `configured`: the tenant's (name, kind, params, enabled) when already read."""
    if configured is None:
        configured = list(EligibilityRule.objects.filter(tenant=tenant)
                          .values_list("name", "kind", "params", "enabled"))
    taken = {kind for _n, kind, _p, _e in configured} | {name for name, *_ in configured}
    rules = [make_rule(kind) for kind in DEFAULT_KINDS if kind not in taken]
    rules += [make_rule(kind, params, name=name)
              for name, kind, params, enabled in configured if enabled]
    return rules + list(extra)


def rule_context(tenant: Tenant, user: EndUser | None, history: History = (),
                 suppressed: set[int] = frozenset()) -> RuleContext:
    """What the rules know of the request: the user's history (item pk -> event types) and
    suppressions; nothing of them without a user."""
    context = RuleContext(tenant=tenant, user=user, now=timezone.now())
    if user is not None:
        for pk, type_name, _ts in history:
            context.history.setdefault(pk, set()).add(type_name)
        context.suppressed = suppressed
    return context


@dataclass
class Pick:
    item: ItemInfo
    score: float
    source: str
    reason: str | None = None


class Selector:
    """Accepts candidates in order while they pass every rule and are not yet taken."""

    def __init__(self, tenant, rules: list[Rule], context: RuleContext, k: int,
                 excluded: set[int]):
        self.tenant, self.rules, self.context, self.k = tenant, rules, context, k
        self.excluded = set(excluded)
        self.picks: list[Pick] = []
        self.filtered: dict[str, int] = {}
        for rule in rules:
            rule.prepare(context)

    @property
    def full(self) -> bool:
        return len(self.picks) >= self.k

    @property
    def missing(self) -> int:
        return self.k - len(self.picks)

    def offer(self, pks, scores, source: str, reason: Reason | None = None) -> None:
        """Candidates best first (item pks and their scores). Item rows are loaded a chunk at
        a time, each twice the one before: offering a whole catalogue costs what is looked at
        before `k` items are accepted, in a handful of queries even when the rules turn most
        of it away (say, a category capped at 4 items)."""
        pks = np.asarray(pks, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        start, chunk = 0, max(4 * self.k, 100)
        while start < len(pks) and not self.full:
            part = slice(start, start + chunk)
            self._offer_chunk([(pk, score) for pk, score in zip(
                pks[part].tolist(), scores[part].tolist(), strict=True)
                if pk not in self.excluded], source, reason)
            start += chunk
            chunk = min(2 * chunk, 10_000)

    def _offer_chunk(self, fresh: list[tuple[int, float]], source: str,
                     reason: Reason | None) -> None:
        infos = load_items(self.tenant, [pk for pk, _ in fresh])
        for pk, score in fresh:
            if self.full:
                return
            self.excluded.add(pk)
            item = infos.get(pk)
            if item is not None:
                self._consider(item, score, source, reason)

    def offer_items(self, scored: list[tuple[ItemInfo, float]], source: str,
                    reason: Reason | None = None) -> None:
        """Like `offer`, with the item rows already loaded (the index search joins them)."""
        for item, score in scored:
            if self.full:
                return
            if item.id in self.excluded:
                continue
            self.excluded.add(item.id)
            self._consider(item, score, source, reason)

    def _consider(self, item: ItemInfo, score: float, source: str,
                  reason: Reason | None) -> None:
        failed = next((r for r in self.rules if not r.allows(item, self.context)), None)
        if failed is not None:
            self.filtered[failed.name] = self.filtered.get(failed.name, 0) + 1
            return
        self.picks.append(Pick(item, float(score), source, reason(item) if reason else None))
        counts = self.context.category_counts
        counts[item.category] = counts.get(item.category, 0) + 1
