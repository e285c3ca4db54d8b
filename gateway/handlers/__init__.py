"""What answers a request at the end of the chain: the proxy, forwarding to
the backend, and ``GET /limits``, answered here."""
