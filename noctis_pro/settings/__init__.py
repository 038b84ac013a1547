"""Settings: base.py (everything, from the environment), local.py, production.py, test.py."""
