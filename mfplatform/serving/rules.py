"""Eligibility rules as plugins.

A rule kind is a class with `kind`, `validate(params) -> params` (raising RuleParamsError
naming the bad field) and `allows(item, context) -> bool`; optional `prepare(context)` loads
what it needs once per request. `params_schema` describes the parameters in JSON Schema (the
OpenAPI subset) for the API's documentation; every params that `validate` returns conforms to
it (tests/serving/test_rule_schemas.py checks each registered kind). Kinds, the built-in ones
included, are registered under the entry-point group `mfplatform.rules` (see pyproject.toml);
a plugin that fails to load or reuses a taken name is a warning, never a broken server.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any, ClassVar

from django.db import connection


class RuleParamsError(ValueError):
    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class ItemInfo:
    """What rules see of a catalogue item. `attributes` may arrive as the database's JSON
    text: it is parsed on first use, since most rules never look at it."""

    __slots__ = ("id", "external_id", "title", "category", "_attributes", "is_available",
                 "is_placeholder", "banned_at", "deleted_at")

    def __init__(self, id: int, external_id: str, title: str, category: str,
                 attributes: dict | str | None, is_available: bool, is_placeholder: bool,
                 banned_at: datetime | None, deleted_at: datetime | None):
        self.id, self.external_id, self.title, self.category = id, external_id, title, category
        self._attributes = attributes
        self.is_available, self.is_placeholder = is_available, is_placeholder
        self.banned_at, self.deleted_at = banned_at, deleted_at

    @property
    def attributes(self) -> dict:
        if not isinstance(self._attributes, dict):
            raw = self._attributes
            self._attributes = (json.loads(raw) if isinstance(raw, str | bytes) else raw) or {}
        return self._attributes

    def __repr__(self) -> str:
        return f"ItemInfo(id={self.id}, external_id={self.external_id!r})"


@dataclass
class RuleContext:
    tenant: Any
    user: Any | None  # EndUser or None
    now: datetime
    history: dict[int, set[str]] = field(default_factory=dict)  # item pk -> event type names
    suppressed: set[int] = field(default_factory=set)
    category_counts: dict[str, int] = field(default_factory=dict)  # of accepted items
    data: dict[str, Any] = field(default_factory=dict)  # what rules prepared


NO_PARAMS_SCHEMA: dict = {"type": "object", "properties": {}, "additionalProperties": False}


def _strings(description: str) -> dict:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _count(description: str) -> dict:
    return {"type": "integer", "minimum": 1, "description": description}


class Rule:
    kind: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # None: a plugin that did not describe its parameters (documented as a free-form object).
    params_schema: ClassVar[dict | None] = None

    def __init__(self, params: dict | None = None, name: str | None = None):
        self.params = self.validate(dict(params or {}))
        self.name = name or self.kind

    @classmethod
    def validate(cls, params: dict) -> dict:
        if params:
            raise RuleParamsError({next(iter(params)): "this rule takes no parameters"})
        return params

    @classmethod
    def schema(cls) -> dict:
        """The JSON Schema of this kind's parameters, as the API documents it."""
        if cls.params_schema is not None:
            return cls.params_schema
        if cls.validate.__func__ is Rule.validate.__func__:
            return NO_PARAMS_SCHEMA
        return {"type": "object", "additionalProperties": True,
                "description": "parameters checked by the rule plugin itself"}

    def prepare(self, context: RuleContext) -> None:
        """Load per-request data (once) before `allows` is called."""

    def allows(self, item: ItemInfo, context: RuleContext) -> bool:
        raise NotImplementedError


def _only(params: dict, *allowed: str) -> None:
    unknown = set(params) - set(allowed)
    if unknown:
        raise RuleParamsError({sorted(unknown)[0]: "unknown parameter"})


def _string_list(params: dict, key: str, required: bool = False) -> list[str]:
    value = params.get(key, [])
    if required and not value:
        raise RuleParamsError({key: "required: a non-empty list of strings"})
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleParamsError({key: "expected a list of strings"})
    return value


def _positive_int(params: dict, key: str) -> int:
    value = params.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RuleParamsError({key: "required: an integer >= 1"})
    return value


class AvailableOnly(Rule):
    kind = "available_only"
    description = "only items marked available (placeholders never)"

    def allows(self, item, context):
        return item.is_available and not item.is_placeholder


class NotBanned(Rule):
    kind = "not_banned"
    description = "never banned or deleted items"

    def allows(self, item, context):
        return item.banned_at is None and item.deleted_at is None


class NotSuppressed(Rule):
    kind = "not_suppressed"
    description = "never items the user hid or disliked"

    def allows(self, item, context):
        return item.id not in context.suppressed


class NotInteracted(Rule):
    kind = "not_interacted"
    description = "never items the user already interacted with (optionally: event types)"
    params_schema = {"type": "object", "additionalProperties": False, "properties": {
        "event_types": _strings("only these event types count as interacted (default: any)")}}

    @classmethod
    def validate(cls, params):
        _only(params, "event_types")
        return {"event_types": _string_list(params, "event_types")}

    def allows(self, item, context):
        types = context.history.get(item.id)
        if not types:
            return True
        wanted = self.params["event_types"]
        return bool(wanted) and not (types & set(wanted))


class CategoryFilter(Rule):
    kind = "category"
    description = "include only / exclude categories"
    params_schema = {
        "type": "object", "additionalProperties": False,
        "properties": {"include": _strings("only items of these categories"),
                       "exclude": _strings("never items of these categories")},
        "description": "give include and/or exclude (not both empty)",
        "anyOf": [{"required": ["include"], "properties": {"include": {"minItems": 1}}},
                  {"required": ["exclude"], "properties": {"exclude": {"minItems": 1}}}]}

    @classmethod
    def validate(cls, params):
        _only(params, "include", "exclude")
        include, exclude = _string_list(params, "include"), _string_list(params, "exclude")
        if not include and not exclude:
            raise RuleParamsError({"include": "give include and/or exclude"})
        return {"include": include, "exclude": exclude}

    def allows(self, item, context):
        if self.params["include"] and item.category not in self.params["include"]:
            return False
        return item.category not in self.params["exclude"]


class AttributePredicate(Rule):
    kind = "attribute"
    description = "an item attribute equals / is in / lies in a range"
    params_schema = {
        "type": "object", "additionalProperties": False, "required": ["key", "op"],
        "properties": {
            "key": {"type": "string", "minLength": 1, "description": "the attribute's name"},
            "op": {"type": "string", "enum": ["equals", "in", "range"]},
            "value": {"description": "op equals: the value (any JSON value)"},
            "values": {"type": "array", "minItems": 1, "items": {},
                       "description": "op in: the allowed values"},
            "min": {"type": "number", "description": "op range: lowest value allowed"},
            "max": {"type": "number", "description": "op range: highest value allowed"}},
        "description": "op equals needs value, in needs values, range needs min and/or max"}

    @classmethod
    def validate(cls, params):
        key = params.get("key")
        if not isinstance(key, str) or not key:
            raise RuleParamsError({"key": "required: the attribute name"})
        op = params.get("op")
        if op == "equals":
            if "value" not in params:
                raise RuleParamsError({"value": "required for op 'equals'"})
        elif op == "in":
            if not isinstance(params.get("values"), list) or not params["values"]:
                raise RuleParamsError({"values": "required for op 'in': a non-empty list"})
        elif op == "range":
            bounds = [params.get("min"), params.get("max")]
            if all(b is None for b in bounds) or not all(
                    b is None or (isinstance(b, int | float) and not isinstance(b, bool))
                    for b in bounds):
                raise RuleParamsError({"min": "op 'range' needs a numeric min and/or max"})
        else:
            raise RuleParamsError({"op": "one of equals, in, range"})
        _only(params, "key", "op", "value", "values", "min", "max")
        # Only what the op uses, and no null bounds: stored params match params_schema.
        used = {"equals": ("value",), "in": ("values",), "range": ("min", "max")}[op]
        return {"key": key, "op": op, **{name: params[name] for name in used
                                         if params.get(name) is not None or name == "value"}}

    def allows(self, item, context):
        p = self.params
        if p["key"] not in item.attributes:
            return False
        value = item.attributes[p["key"]]
        if p["op"] == "equals":
            return value == p["value"]
        if p["op"] == "in":
            return value in p["values"]
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return (p.get("min") is None or value >= p["min"]) and \
            (p.get("max") is None or value <= p["max"])


class MaxPerCategory(Rule):
    kind = "max_per_category"
    description = "at most N items of one category in a response (diversity)"
    params_schema = {"type": "object", "additionalProperties": False, "required": ["max"],
                     "properties": {"max": _count("items of one category at most")}}

    @classmethod
    def validate(cls, params):
        _only(params, "max")
        return {"max": _positive_int(params, "max")}

    def allows(self, item, context):
        return context.category_counts.get(item.category, 0) < self.params["max"]


class FrequencyCap(Rule):
    kind = "frequency_cap"
    description = "not recommended to the same user more than N times in T hours"
    params_schema = {"type": "object", "additionalProperties": False,
                     "required": ["max", "hours"],
                     "properties": {"max": _count("recommendations of one item at most"),
                                    "hours": _count("within this many hours")}}

    @classmethod
    def validate(cls, params):
        _only(params, "max", "hours")
        return {"max": _positive_int(params, "max"), "hours": _positive_int(params, "hours")}

    def prepare(self, context):
        counts: dict[int, int] = {}
        if context.user is not None:
            since = context.now - timedelta(hours=self.params["hours"])
            with connection.cursor() as cursor:
                cursor.execute("SELECT item_id, count(*) FROM serving_impression "
                               "WHERE user_id = %s AND created_at >= %s GROUP BY item_id",
                               [context.user.pk, since])
                counts = dict(cursor.fetchall())
        context.data[f"{self.name}:counts"] = counts
        context.data["record_impressions"] = True

    def allows(self, item, context):
        return context.data[f"{self.name}:counts"].get(item.id, 0) < self.params["max"]


# Applied to every response unless the tenant configures a rule of the same kind (which then
# replaces it, e.g. not_interacted limited to purchases) or disables one by name.
DEFAULT_KINDS = ("available_only", "not_banned", "not_suppressed", "not_interacted")


@lru_cache(maxsize=1)
def rule_kinds() -> dict[str, type[Rule]]:
    kinds: dict[str, type[Rule]] = {}
    for entry in sorted(entry_points(group="mfplatform.rules"), key=lambda e: e.name):
        try:
            cls = entry.load()
        except Exception as exc:  # a broken plugin must not break serving
            warnings.warn(f"rule plugin {entry.name!r} failed to load: {exc}", stacklevel=2)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Rule)):
            warnings.warn(f"rule plugin {entry.name!r} is not a Rule subclass", stacklevel=2)
            continue
        if entry.name in kinds:
            warnings.warn(f"rule plugin {entry.name!r} reuses a taken name; ignored",
                          stacklevel=2)
            continue
        kinds[entry.name] = cls
    return kinds


def make_rule(kind: str, params: dict | None = None, name: str | None = None) -> Rule:
    kinds = rule_kinds()
    if kind not in kinds:
        raise RuleParamsError({"kind": f"unknown rule kind {kind!r}; available: "
                                       f"{', '.join(sorted(kinds))}"})
    return kinds[kind](params, name=name)
