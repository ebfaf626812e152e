"""cnrd: a DHCPv4 server with main/backup failover, built on Twisted."""

__version__ = "0.1.0"
