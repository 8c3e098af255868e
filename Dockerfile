# One image for every accordwatch process; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY services ./services
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/accordwatch --create-home accordwatch \
    && rm -rf /src

# The default rules file lives beside the sources, which a non-editable install leaves
# behind: ship it and point the setting at it. Worker state (faust's data dir) goes to HOME.
COPY deploy/alerts/rules.yaml /etc/accordwatch/rules.yaml
ENV ACCORDWATCH_HOME=/var/lib/accordwatch \
    ACCORDWATCH_ALERTS_RULES=/etc/accordwatch/rules.yaml

USER accordwatch
WORKDIR /var/lib/accordwatch
CMD ["accordwatch", "--help"]
