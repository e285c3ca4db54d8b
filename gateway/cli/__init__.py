"""The ``image-gateway`` command: run, demo, token, check-config, explain,
revoke and limits."""
