FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY server ./server
COPY signaling ./signaling
COPY static ./static
COPY seeds ./seeds
# Editable, so the server finds static/ and seeds/ beside its code. The install
# compiles the forwarding fan-out (server/media/_fanout.c): a C compiler for that
# step only.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-cache-dir -e . \
    && python -c "import server.media._fanout" \
    && apt-get purge -y gcc libc6-dev && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/*
VOLUME ["/data"]
EXPOSE 8080
CMD ["yitang", "serve", "--host", "0.0.0.0", "--data-dir", "/data"]
