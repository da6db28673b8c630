# The enforcer image: `enforcer` is the entrypoint, `worker` the default command.
#   docker build -t enforcer:local .      (deploy/docker-compose.yml builds it for you)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY enforcer ./enforcer
COPY topics ./topics
COPY deploy/policies ./deploy/policies

# Installed in place (-e): `enforcer topics apply` reads topics/catalogue.yaml from beside the
# package, and the default ENFORCER_POLICY_FILE is deploy/policies/default.yaml under /app.
RUN pip install -e . \
    && useradd --system --uid 10001 --no-create-home --home-dir /app enforcer
USER enforcer

EXPOSE 6066
ENTRYPOINT ["enforcer"]
CMD ["worker"]
