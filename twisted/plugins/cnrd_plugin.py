"""The ``twistd cnrd`` plugin: ``twistd -n cnrd --config etc/main.ini``."""

from twisted.application.service import ServiceMaker

cnrd = ServiceMaker(
    "cnrd",
    "cnrd.app.tap",
    "A DHCPv4 server with main/backup failover",
    "cnrd",
)
