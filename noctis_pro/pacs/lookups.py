"""`__like`: SQL LIKE with the caller's own wildcards (Django's contains/startswith escape them).

Used on Upper("patient__patient_name") so PostgreSQL can use the pg_trgm index on upper(patient_name).
"""

from typing import Any

from django.db.models import CharField, Lookup


@CharField.register_lookup
class Like(Lookup):
    lookup_name = "like"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} LIKE {rhs}", [*lhs_params, *rhs_params]
