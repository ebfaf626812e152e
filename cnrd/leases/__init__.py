"""Leases: the record per address, the in-memory table and allocator, and the stores that make them durable."""
