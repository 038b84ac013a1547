#!/bin/sh
# Container entrypoint of the Django image: with NOCTIS_MIGRATE_ON_START=1 (the django service), apply
# migrations, collect static files for nginx and make sure the admin exists, then run the given command.
set -e
if [ "${NOCTIS_MIGRATE_ON_START:-0}" = "1" ]; then
  python manage.py migrate --noinput
  python manage.py collectstatic --noinput --verbosity 0
  if [ -n "${NOCTIS_ADMIN_PASSWORD:-}" ]; then
    python manage.py ensure_admin --username "${NOCTIS_ADMIN_USER:-admin}"
  fi
fi
exec "$@"
