"""cnrd-import: moving an ISC dhcpd or Kea installation to cnrd.

Readers for ISC dhcpd's lease file (:mod:`.isc_leases`) and Kea's lease4
memfile CSV (:mod:`.kea_csv`) turn foreign records into
:class:`.records.ForeignLease`; :mod:`.plan` decides which become cnrd
leases and why the others do not; :mod:`.dhcpd_conf` converts the common
subset of a dhcpd.conf into a cnrd INI.  All of these are pure: the clock
and the files belong to :mod:`.cli`.
"""
