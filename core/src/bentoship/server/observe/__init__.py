"""What the control plane observes: metrics per revision and logs, kept in DuckDB."""
