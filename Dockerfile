# syntax=docker/dockerfile:1
# The production image: gunicorn serving Django, and the same image runs the
# Celery worker and beat (docker-compose.yml). TLS ends at the proxy in front.

# --- front-end packages, from the npm registry at build time (never a CDN) ---
FROM node:20-bookworm-slim AS assets
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --omit=dev

# --- the application ---
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    BLUESPARK_ENV=prod

RUN groupadd --system --gid 10001 bluespark \
    && useradd --system --uid 10001 --gid bluespark --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin bluespark

WORKDIR /app

# Every package pinned and hash-checked: a changed or substituted file fails the build.
COPY requirements/base.lock requirements/base.lock
RUN python -m venv /opt/venv \
    && pip install --require-hashes -r requirements/base.lock

COPY --from=assets /build/node_modules/htmx.org node_modules/htmx.org
COPY . .

# collectstatic imports the production settings, which refuse to load without
# a strong secret, hosts, database URLs and a keyring. These build-time values exist only
# in this RUN; none of them reaches the image or a running container.
RUN SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
    ALLOWED_HOSTS=build.invalid \
    DATABASE_URL=postgres://build@build.invalid/build \
    KEYSTORE_DATABASE_URL=postgres://build@build.invalid/keystore \
    BLUESPARK_KEYRING="$(python -c 'import json; from security.keyring import generate_keyring_document as g; print(json.dumps(g("prod")))')" \
    REDIS_URL=redis://build.invalid:6379/0 \
    EMAIL_HOST=build.invalid \
    python manage.py collectstatic --noinput --verbosity 0 \
    && python -m compileall -q /app

USER bluespark
EXPOSE 8000

# Settings in gunicorn.conf.py (workers from WEB_CONCURRENCY, no access log:
# the application writes one JSON line per request itself).
CMD ["gunicorn", "bluespark.wsgi", "--config", "gunicorn.conf.py"]
