"""Example rule plugin: never recommend items whose title contains one of the given words."""

from mfplatform.serving.rules import Rule, RuleParamsError


class TitleExcludes(Rule):
    kind = "title_excludes"
    description = "never items whose title contains one of `words` (case-insensitive)"
    params_schema = {"type": "object", "additionalProperties": False, "required": ["words"],
                     "properties": {"words": {"type": "array", "minItems": 1,
                                              "items": {"type": "string", "minLength": 1}}}}

    @classmethod
    def validate(cls, params):
        words = params.get("words")
        if not isinstance(words, list) or not words or not all(
                isinstance(w, str) and w for w in words):
            raise RuleParamsError({"words": "required: a non-empty list of words"})
        return {"words": [w.lower() for w in words]}

    def allows(self, item, context):
        title = (item.title or "").lower()
        return not any(word in title for word in self.params["words"])
