# The API image: `docker compose up` runs it beside Redis (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ABTEST_HOME=/data \
    ABTEST_EXPERIMENTS=/app/experiments

WORKDIR /app
COPY pyproject.toml README.md ./
COPY abtest ./abtest
COPY variants ./variants
COPY analysis ./analysis
RUN pip install --no-cache-dir '.[examples]'
COPY experiments ./experiments

RUN useradd --create-home --uid 10001 abtest && mkdir -p /data && chown abtest /data
USER abtest
VOLUME ["/data"]
EXPOSE 8080

# Validate the experiment files at build time: a broken prompt never reaches production.
RUN abtest validate /app/experiments

CMD ["abtest", "serve", "--host", "0.0.0.0", "--port", "8080", "--workers", "2"]
