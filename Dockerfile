# One image for the web server, the Celery worker and Celery beat
# (docker-compose.yml picks the command). Build: docker compose build
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=portal_reset.settings

WORKDIR /app

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home --shell /usr/sbin/nologin app

# The pinned dependencies of pyproject.toml, in their own layer so that a
# code change does not reinstall them. The app itself is not packaged
# ([tool.setuptools] packages = []): it runs from /app.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The source stays owned by root: the app user can read it, not change it.
COPY . .

# Compiled translations (.mo, not in git), with Babel's pybabel: the slim
# image has no GNU gettext, and this needs no settings. A broken placeholder
# in a .po fails the build.
RUN pybabel compile -d locale -D django

# Static files with hashed names and a manifest (whitenoise serves them).
# It must run with DEBUG off, as in production: with DEBUG on, settings pick
# the plain storage and write no manifest, and every page would then fail.
# These values only satisfy settings for this one command; nothing connects
# to them and none of them ends up in the image's environment.
RUN DEBUG=0 \
    SECRET_KEY=collectstatic-at-build-time-only \
    ALLOWED_HOSTS=localhost \
    SITE_URL=http://localhost \
    DATABASE_URL=sqlite:////tmp/collectstatic.sqlite3 \
    CELERY_BROKER_URL=memory:// \
    CACHE_URL=locmemcache:// \
    EMAIL_HOST=localhost \
    DEFAULT_FROM_EMAIL=build@localhost \
    STAFF_NOTIFY_EMAIL=build@localhost \
    python manage.py collectstatic --noinput \
    && chown app:app /app/var

USER app

EXPOSE 8000

# The worker and beat services override this command.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "portal_reset.wsgi"]
