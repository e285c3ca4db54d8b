"""HTTP plumbing: the upstream client and what the proxy needs to speak HTTP."""
