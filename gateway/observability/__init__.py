"""What the gateway tells its operator: metrics, access and audit records,
readiness, and the feed of recent decisions the dashboard shows.

The chain records a request's outcome on its RequestContext; one middleware
(gateway.middleware.observability) turns that into everything here.
"""
