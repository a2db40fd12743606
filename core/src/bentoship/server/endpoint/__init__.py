"""A deployment's stable endpoint: the reverse proxy in front of its serving revision."""
