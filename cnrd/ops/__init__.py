"""Operational plumbing: log lines, traps and their webhook, the garbage-collector policy."""
