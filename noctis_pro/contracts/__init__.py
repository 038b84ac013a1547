"""Wire and table contracts shared by Django, FastAPI and (mirrored, pinned by tests/contracts/*.json) the Rust SCP.

Pure Python: imports neither Django nor any app, so fastapi_app may import it.
"""
