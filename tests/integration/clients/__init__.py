"""Programs the OpenStack clients' own virtualenv (.openstack-venv) runs against
the gateway; each prints one JSON object of what it saw, for the tests to check."""
