"""Composition: the running server built from its configuration, and the twistd glue."""
