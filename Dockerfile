FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY signaling ./signaling
COPY static ./static
COPY seeds ./seeds
# Editable, so the server finds static/ and seeds/ beside its code.
RUN pip install --no-cache-dir -e .
VOLUME ["/data"]
EXPOSE 8080
CMD ["yitang", "serve", "--host", "0.0.0.0", "--data-dir", "/data"]
