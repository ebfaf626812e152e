"""DHCPv4 failover (draft-ietf-dhc-failover-12, as ISC dhcpd 4.4 speaks it)."""
