"""image-gateway: an async policy gateway in front of a Glance-compatible image API."""

__version__ = "0.1.0"
