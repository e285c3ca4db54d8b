"""Keystone tokens: validated at Keystone v3 with the gateway's own service
token, cached in-process and, sealed, in Redis for the whole fleet."""
