"""What the control plane observes: metrics per revision, logs and events, kept in DuckDB."""
