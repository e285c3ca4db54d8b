"""HTTP plumbing: what crosses the gateway's boundaries, in and out."""
