"""relay: a self-hosted webhook relay for last-mile delivery platforms."""

__version__ = "0.1.0"
