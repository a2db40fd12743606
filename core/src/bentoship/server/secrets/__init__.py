"""Deployment secrets: sealed at rest, pinned per revision, delivered as envs or files, masked."""
