FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY server ./server
COPY signaling ./signaling
COPY static ./static
COPY seeds ./seeds
# Editable, so the server finds static/ and seeds/ beside its code. The install
# compiles the forwarding fan-out, the ingest and the outbound SRTP (server/media/*.c):
# a C compiler and OpenSSL's headers for that step only (the image's Python already
# links OpenSSL's libcrypto, which the outbound SRTP uses).
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
    && pip install --no-cache-dir -e . \
    && python -c "import server.media._fanout, server.media._ingest, server.media._outbound_srtp" \
    && apt-get purge -y gcc libc6-dev libssl-dev && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
VOLUME ["/data"]
EXPOSE 8080
CMD ["yitang", "serve", "--host", "0.0.0.0", "--data-dir", "/data"]
