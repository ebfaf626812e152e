# cnrd: a DHCPv4 server with failover.  Builds unchanged against Docker Hub's
# Debian image, or a locally made base: --build-arg BASE=localhost/debian-base:bookworm
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY cnrd ./cnrd
COPY twisted ./twisted
RUN python3 -m venv /opt/build && /opt/build/bin/pip install --no-cache-dir --upgrade pip wheel \
    && /opt/build/bin/pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN python3 -m venv /opt/cnrd && /opt/cnrd/bin/pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    # regenerate the twistd plugin cache at build time (the image is read-only at run time)
    && /opt/cnrd/bin/python -c "from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))"
COPY etc/standalone.ini /etc/cnrd/cnrd.ini
VOLUME /var/lib/cnrd
ENV PATH=/opt/cnrd/bin:$PATH
EXPOSE 67/udp 647/tcp 8067/tcp
# A DHCP server needs port 67 and packet sockets: run with
#   --cap-drop ALL --cap-add NET_BIND_SERVICE --cap-add NET_RAW
STOPSIGNAL SIGTERM
ENTRYPOINT ["twistd", "-n", "--pidfile=", "cnrd"]
CMD ["--config", "/etc/cnrd/cnrd.ini"]
