"""Benchmarks: cnrd against ISC dhcpd 4.4 and Kea 2.2 in one run.

``python -m bench.run`` is the entry point (see bench/README.md).  The
modules:

``bench.servers``
    one class per server under test and the ``SERVERS`` registry
    (name -> factory), all behind the same start/stop/lease_count/pid face;
``bench.perf``
    perfdhcp runs and what is read out of them (per-exchange delays from
    ``-x t``, the renewal block of ``-f``), and /proc samples of a server;
``bench.probe``
    a one-question relay client (DISCOVER until the first OFFER) used to
    time start-up;
``bench.run``
    the lab, the measurements, the table and the JSON.

The namespace lab and the cnrd process helper come from
``tests/integration`` and are reused, not copied.
"""
