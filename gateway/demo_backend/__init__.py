"""The demo's backend: a small in-memory stand-in for Glance's image API.

Not on the gateway's runtime path: only ``image-gateway demo`` and the tests
start it. The real backend is Glance.
"""
