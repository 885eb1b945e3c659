"""The engine version written into artifacts (a module of its own: the base imports it)."""

__version__ = "0.1.0"
