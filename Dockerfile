# The broker as a container image: `broker serve` on 0.0.0.0:8080, state under /data.
#
#   docker build -t broker .
#   docker run --rm -p 127.0.0.1:8080:8080 -v broker-data:/data broker
#
# Configuration goes through the usual BROKER_<SECTION>_<KEY> variables (DESIGN section 10),
# or through flags after the image name (`docker run broker serve --store redis ...`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A fixed numeric id, so orchestrators can verify "runs as non-root" without a passwd lookup.
RUN groupadd --system --gid 10001 broker \
    && useradd --system --uid 10001 --gid broker --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin broker

# Install the package (with uvloop) from the build context, then drop the sources.
WORKDIR /tmp/src
COPY . .
RUN pip install ".[fast]" \
    && cd / && rm -rf /tmp/src

# The data directory holds the SQLite file, the generated master key (SQLite store only),
# root-credentials.json and the audit log: private to the broker user.
RUN mkdir -p /data && chown broker:broker /data && chmod 0700 /data
VOLUME ["/data"]
WORKDIR /data

ENV BROKER_SERVER_HOST=0.0.0.0 \
    BROKER_SERVER_PORT=8080 \
    BROKER_STORE_DATA_DIR=/data

USER 10001:10001
EXPOSE 8080

# Liveness (spec/security.md F7). The slim image has no curl, so python asks /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('BROKER_SERVER_PORT', '8080') + '/healthz', timeout=2)"]

ENTRYPOINT ["broker"]
CMD ["serve"]
