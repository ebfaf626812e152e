"""Tests for the failover package."""
