# cnrd: a DHCPv4 server with failover.  See docs/containers.md.
#
# Builds unchanged against Docker Hub's Debian image, or against a locally
# made base (scripts/container-base-image) where no registry is reachable:
#   podman build --format docker --build-arg BASE=localhost/debian-base:bookworm -t localhost/cnrd .
# (scripts/container-build does exactly that.)  Behind a TLS-intercepting
# proxy, hand pip the CA bundle as a build secret (it never lands in a layer):
#   --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE=debian:bookworm-slim

# -- python: the interpreter, shared by the build and the runtime stages, so
#    the venv built below runs on exactly the Python it was built with.
FROM ${BASE} AS python
# On every stage: `podman image prune --filter label=org.opencontainers.image.title=cnrd`
# finds this Dockerfile's stale build images and nothing else.
LABEL org.opencontainers.image.title=cnrd \
      org.opencontainers.image.description="cnrd: a DHCPv4 server with main/backup failover"
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 libcap2-bin \
    && rm -rf /var/lib/apt/lists/*

# -- build: wheels for cnrd and its dependencies, installed into a clean venv.
#    gcc and the Python headers: setup.py compiles cnrd's pure cores with mypyc
#    (pyproject.toml [tool.cnrd.mypyc]); the runtime stage needs neither.
FROM python AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Dependencies first, from pyproject.toml and the pinned versions of
# constraints.txt alone: a change to cnrd's code reuses this layer, and two
# builds a month apart install the same versions.
COPY pyproject.toml constraints.txt ./
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip install -q --upgrade -c constraints.txt pip setuptools wheel mypy \
    && python3 -c "import tomllib; \
print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" >requirements.txt \
    && /opt/build/bin/pip wheel -q -c constraints.txt --wheel-dir /wheels -r requirements.txt
COPY setup.py setup.cfg README.md LICENSE CHANGELOG.md ./
COPY etc ./etc
COPY deploy/systemd ./deploy/systemd
COPY deploy/prometheus ./deploy/prometheus
COPY docs/deploy.md docs/metrics.md ./docs/
COPY cnrd ./cnrd
COPY twisted ./twisted
# --copies: the venv gets its own python binary, which alone receives the
# file capabilities below (the image's /usr/bin/python3 stays unprivileged).
# The image is the compiled build: the check after the install fails the
# build if setup.py fell back to plain Python.
RUN /opt/build/bin/pip wheel -q --no-deps --no-build-isolation --wheel-dir /wheels . \
    && python3 -m venv --without-pip --copies /opt/cnrd \
    && py="$(basename "$(readlink -f /usr/bin/python3)")" \
    && ln -sf "$py" /opt/cnrd/bin/python3 && ln -sf python3 /opt/cnrd/bin/python \
    && /opt/build/bin/pip --python /opt/cnrd/bin/python install -q --no-index --find-links /wheels cnrd \
    && cd / && /opt/cnrd/bin/python -c "import importlib, tomllib; \
mods = tomllib.load(open('/src/pyproject.toml', 'rb'))['tool']['cnrd']['mypyc']['modules']; \
py = [m for m in mods if importlib.import_module(m).__file__.endswith('.py')]; \
assert not py, f'not compiled: {py}'" \
    # The twistd plugin cache, made now: at run time site-packages is not
    # writable.  Twisted remakes a cache not newer than every plugin module,
    # and image layers keep whole seconds: hence the sleep.
    && sleep 1 \
    && /opt/cnrd/bin/python -c "from twisted.plugin import IPlugin, getPlugins; \
assert 'cnrd' in {p.tapname for p in getPlugins(IPlugin) if hasattr(p, 'tapname')}" \
    && test -s /opt/cnrd/lib/python3*/site-packages/twisted/plugins/dropin.cache

# -- runtime
FROM python
ARG UID=10067
RUN groupadd --system --gid ${UID} cnrd \
    && useradd --system --uid ${UID} --gid cnrd --home-dir /var/lib/cnrd --no-create-home \
        --shell /usr/sbin/nologin cnrd \
    && install -d -o cnrd -g cnrd -m 0750 /var/lib/cnrd
COPY --from=build /opt/cnrd /opt/cnrd
# Port 67 and 647 need CAP_NET_BIND_SERVICE, the AF_PACKET reply to a client
# without an address CAP_NET_RAW (cnrd/dhcp/net.py).  The non-root cnrd user
# gets them from file capabilities on the venv's interpreter; the container
# must still be allowed them: cap_drop ALL, cap_add NET_BIND_SERVICE, NET_RAW.
RUN setcap cap_net_bind_service,cap_net_raw=ep "$(readlink -f /opt/cnrd/bin/python3)"
COPY deploy/healthcheck.py /usr/local/bin/cnrd-healthcheck
# The default configuration: a standalone server on eth0 (mount your own).
COPY etc/standalone.ini /etc/cnrd/cnrd.ini
RUN sed -i 's/^interfaces = eth1$/interfaces = eth0/; s|^data-dir = .*|data-dir = /var/lib/cnrd|' /etc/cnrd/cnrd.ini
ENV PATH=/opt/cnrd/bin:$PATH PYTHONUNBUFFERED=1
VOLUME /var/lib/cnrd
WORKDIR /var/lib/cnrd
USER cnrd
EXPOSE 67/udp 647/tcp 8067/tcp
# Healthy = alive: GET /api/v1/health where [api] listen of /etc/cnrd/cnrd.ini
# says (python3's standard library; no curl in the image, no token needed).
# Not /ready: a server waiting out MCLT in RECOVER-WAIT is doing its job, and
# an orchestrator restarting it would only start the wait again.  Load
# balancers and alerts ask /ready (cnrd-healthcheck --ready); docs/containers.md.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["cnrd-healthcheck"]
# twistd runs as PID 1 and handles SIGTERM itself: the reactor stops, the
# lease store is drained and closed, and the process exits at once.
STOPSIGNAL SIGTERM
ENTRYPOINT ["twistd", "--nodaemon", "--pidfile=", "cnrd"]
CMD ["--config", "/etc/cnrd/cnrd.ini"]
