"""ml-service: self-hosted inference for the home organization app."""

__version__ = "0.1.0"
