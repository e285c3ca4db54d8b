"""HTTP plumbing: the route table, the fault catalog, the upstream client,
hop-by-hop headers, the header boundary, the client's address, request
bodies checked before forwarding, the backend's links pointed at the
gateway, and the server protocol."""
