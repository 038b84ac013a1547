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
