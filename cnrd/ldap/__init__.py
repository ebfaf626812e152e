"""An LDAPv3 client for looking up DHCP clients in a directory (CNR's LDAP remote servers)."""
