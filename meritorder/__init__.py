"""meritorder: a semantic router for LLM traffic, served as an Envoy external processor."""

__version__ = "0.1.0"
