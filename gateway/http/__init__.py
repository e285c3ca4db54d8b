"""HTTP plumbing of the gateway: routes, request bodies, links, faults."""
