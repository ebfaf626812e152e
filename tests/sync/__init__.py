"""Tests of cnrd.sync, the failover pair synchronization planner."""
