# bitswarm: tracker + index + DHT node (`bitswarm serve`, the default) or the client daemon
# (`bitswarm daemon ...`) in one image. Multi-stage: the build stage makes a virtual environment
# with bitswarm[server]; the runtime stage copies only that, and runs as an unprivileged user.
#
#   docker build -t bitswarm .
#   docker run -p 6969:6969 -p 6969:6969/udp -p 42070:42070 -p 6881:6881/udp -v bitswarm:/var/lib/bitswarm bitswarm
#   docker run -p 9091:9091 -p 6881:6881 -v bitswarm:/var/lib/bitswarm bitswarm \
#       daemon --api 0.0.0.0:9091 --data /var/lib/bitswarm/daemon
#
# tests/packaging/test_packaging.py checks this file and runs the build stage's RUN steps.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/bitswarm
RUN /opt/bitswarm/bin/pip install --no-cache-dir ".[server]"
RUN /opt/bitswarm/bin/python -m compileall -q /opt/bitswarm/lib

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 bitswarm \
 && useradd --system --uid 10001 --gid bitswarm --home-dir /var/lib/bitswarm --create-home \
        --shell /usr/sbin/nologin bitswarm
COPY --from=build /opt/bitswarm /opt/bitswarm
ENV PATH=/opt/bitswarm/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    XDG_STATE_HOME=/var/lib/bitswarm/state \
    XDG_DATA_HOME=/var/lib/bitswarm/data
USER bitswarm:bitswarm
WORKDIR /var/lib/bitswarm
VOLUME ["/var/lib/bitswarm"]
# peers (TCP) and DHT (UDP); tracker (HTTP+UDP); index; daemon API and web UI
EXPOSE 6881/tcp 6881/udp 6969/tcp 6969/udp 42070/tcp 9091/tcp
ENTRYPOINT ["bitswarm"]
CMD ["serve", "--dir", "/var/lib/bitswarm"]
