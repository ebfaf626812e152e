"""The operator's side of a running server: commands, the admin HTTP API and metrics."""
