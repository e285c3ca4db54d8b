"""HTTP plumbing: the route table, the fault catalog, the upstream client and
the proxy handler that forwards through it, hop-by-hop headers and the
client's address."""
