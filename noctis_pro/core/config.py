"""Start-up checks of configuration: one clear line saying which value is wrong and why."""

INSECURE_PREFIX = "django-insecure"
MIN_SECRET_KEY_LENGTH = 40


class ConfigError(RuntimeError):
    """A missing or wrong environment value; the process must not start."""


def check_secret_key(key: str, *, debug: bool) -> None:
    if debug:
        return
    if not key:
        raise ConfigError("DJANGO_SECRET_KEY is not set: with DEBUG off a real secret key is required")
    if key.startswith(INSECURE_PREFIX) or len(key) < MIN_SECRET_KEY_LENGTH or len(set(key)) < 5:
        raise ConfigError(
            f"DJANGO_SECRET_KEY is not a real secret: use at least {MIN_SECRET_KEY_LENGTH} random characters"
        )


def settings_or_exit(program: str) -> None:
    """Load Django's settings now, so a missing or wrong value stops `program` at start with one line saying
    which and why (exit code 2) instead of a traceback, and nothing starts half-configured."""
    import sys

    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        settings.INSTALLED_APPS  # noqa: B018 (touching a setting loads them all)
    except (ConfigError, ImproperlyConfigured) as e:
        sys.stderr.write(f"{program}: configuration error: {e}\n")
        raise SystemExit(2) from None
