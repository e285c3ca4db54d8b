"""The operator's listener: health, readiness, metrics and the dashboard.

It is its own aiohttp app on its own port (127.0.0.1 by default), never
reachable through the proxy listener.
"""
