"""edge-agent: the software inside a smart-city roadside unit."""

__version__ = "0.1.0"
