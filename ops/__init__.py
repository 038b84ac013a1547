"""Running NoctisPro on one machine: `make run` and the end-to-end tests start services through this package.

envfile.py  the project's .env (what `make run` chose: ports, URLs, generated secrets)
embedded.py private PostgreSQL and Redis under var/ when DATABASE_URL / REDIS_URL are not given
services.py the process table: the same services docker-compose.yml names, with their commands
supervisor.py starts them in order, prefixes their logs, stops them all on Ctrl-C
"""
