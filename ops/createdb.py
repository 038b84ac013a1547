"""Create the embedded cluster's application database when missing (`python -m ops.createdb`)."""

import os
import sys
from urllib.parse import urlsplit, urlunsplit

from ops import embedded


def main() -> int:
    url = os.environ["DATABASE_URL"]
    parts = urlsplit(url)
    dbname = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    try:
        embedded.postgres_create_database(admin_url=admin_url, dbname=dbname)
    except Exception as e:
        print(f"createdb: cannot create database {dbname!r}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
