"""HTTP plumbing: the route table, the fault catalog, the upstream client and
the proxy handler that forwards through it, hop-by-hop headers, the header
boundary, the request target, the client's address and the server protocol."""
