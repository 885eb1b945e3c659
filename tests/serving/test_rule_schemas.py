"""Each rule kind's params_schema (what the API documents) holds for every params its
validator accepts, for built-in and plugin kinds alike; the schema lists every kind."""

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfplatform.serving.rules import RuleParamsError, rule_kinds

# At least one accepted params per kind, so no schema is checked against nothing.
ACCEPTED = {
    "available_only": [{}], "not_banned": [{}], "not_suppressed": [{}],
    "not_interacted": [{}, {"event_types": ["purchase"]}],
    "category": [{"include": ["books"]}, {"exclude": ["toys"], "include": []}],
    "attribute": [{"key": "brand", "op": "equals", "value": None},
                  {"key": "brand", "op": "in", "values": ["a", 1]},
                  {"key": "price", "op": "range", "min": 1.5, "max": None},
                  {"key": "price", "op": "equals", "value": 3, "values": ["ignored"]}],
    "max_per_category": [{"max": 2}],
    "frequency_cap": [{"max": 3, "hours": 24}],
    "title_excludes": [{"words": ["Sequel"]}],  # the example plugin
}

KEYS = ["event_types", "include", "exclude", "key", "op", "value", "values", "min", "max",
        "hours", "words", "other"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.floats(-2, 2),
                    st.sampled_from(["", "equals", "in", "range", "books", "price"]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))


def _conforms(kind: str, params: dict) -> None:
    cls = rule_kinds()[kind]
    accepted = cls(params).params
    jsonschema.validate(accepted, cls.schema())


def test_every_registered_kind_has_accepted_examples():
    assert set(ACCEPTED) == set(rule_kinds())


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_accepted_params_conform_to_the_documented_schema(kind):
    for params in ACCEPTED[kind]:
        _conforms(kind, params)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(ACCEPTED)),
       params=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4))
def test_whatever_a_validator_accepts_conforms_to_its_schema(kind, params):
    try:
        _conforms(kind, params)
    except RuleParamsError as exc:  # refused: with the field named
        assert exc.errors and all(isinstance(key, str) and key for key in exc.errors)


@pytest.mark.django_db
def test_the_api_schema_types_params_by_kind(client):
    schemas = yaml.safe_load(client.get("/api/schema/").content)["components"]["schemas"]
    union = schemas["EligibilityRuleOfKind"]
    assert union["discriminator"]["propertyName"] == "kind"
    mapping = union["discriminator"]["mapping"]
    assert set(mapping) == set(rule_kinds())
    for kind, ref in mapping.items():
        variant = schemas[ref.rsplit("/", 1)[1]]
        assert variant["properties"]["params"] == rule_kinds()[kind].schema()
        kind_enum = variant["properties"]["kind"]["allOf"][0]["$ref"].rsplit("/", 1)[1]
        assert schemas[kind_enum]["enum"] == [kind]
    assert schemas["EligibilityRuleKindEnum"]["enum"] == sorted(rule_kinds())
    assert schemas["AttributeRule"]["properties"]["params"]["properties"]["op"]["enum"] == [
        "equals", "in", "range"]
