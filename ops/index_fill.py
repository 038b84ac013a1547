"""A synthetic archive index for `make bench-dicomweb`: patients, studies, series and instances generated straight
into the tables Django's migrations own, with set-based SQL (INSERT ... SELECT over generate_series).

Indexing a million real files through the SCP would take hours on this machine; the read path only needs the
rows. The values vary the way a department's do, so that searches are as selective as real ones: surnames made
of two syllables (a `SURNAME*` search matches ~1/600 of patients), dates over ten years, a modality mix, unique
accession numbers, and the derived study fields (ModalitiesInStudy, counts) that pacs.indexing keeps.
Instances point at no file (path under synthetic/): WADO of their bytes or metadata is not what they are for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# pydicom's UID root (1.2.826.0.1.3680043.8.498) is the one generate_uid() uses; the run token keeps two fills of
# one database apart.
UID_ROOT = "1.2.826.0.1.3680043.8.498"

SURNAME_HEADS = [
    "AB", "BAR", "COR", "DAL", "EST", "FAR", "GOR", "HAL", "IVAN", "JON", "KAR", "LIND", "MOR", "NAK", "OLS",
    "PET", "QUIN", "ROS", "SAND", "TOR", "UL", "VAL", "WIL", "YAM",
]  # fmt: skip
SURNAME_TAILS = [
    "ADA", "BERG", "CHEV", "DORF", "ELLI", "FIELD", "GAARD", "HOLM", "IAN", "KOVA", "LUND", "MANN", "NESS", "OVIC",
    "POULOS", "QUIST", "RIDGE", "SSON", "TANI", "UCCI", "VILLE", "WOOD", "YAMA", "ZADE",
]  # fmt: skip
GIVEN_NAMES = [
    "ANNA", "BEN", "CARLA", "DAVID", "EMMA", "FARID", "GRACE", "HUGO", "IRIS", "JONAS", "KEIKO", "LUCA", "MAYA",
    "NOAH", "OLGA", "PAUL", "RANA", "SAM", "TARA", "UMAR", "VERA", "WEI", "YUSUF", "ZOE",
]  # fmt: skip
# One entry per 5 % of studies: CT 35 %, MR 25 %, CR 15 %, US 10 %, DX, MG, PT (a PET/CT: CT\PT) 5 % each.
STUDY_MODALITY = ["CT"] * 7 + ["MR"] * 5 + ["CR"] * 3 + ["US"] * 2 + ["DX", "MG", "PT"]
SOP_CLASS = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}
MATRIX = {"CT": 512, "MR": 256, "CR": 2048, "US": 640, "DX": 2048, "MG": 3328, "PT": 128}
STUDY_DESCRIPTIONS = [
    "CHEST", "ABDOMEN PELVIS", "HEAD", "SPINE LUMBAR", "KNEE LEFT", "KNEE RIGHT", "SHOULDER", "BREAST SCREENING",
    "CARDIAC", "WHOLE BODY", "NECK", "HIP",
]  # fmt: skip
BODY_PARTS = ["CHEST", "ABDOMEN", "HEAD", "LSPINE", "KNEE", "KNEE", "SHOULDER", "BREAST", "HEART", "WHOLEBODY", "NECK"]
PHYSICIANS = ["ADLER^RUTH", "BROWN^JAMES", "CHEN^LI", "DIAZ^MARIA", "EKLUND^PER", "FOX^ALAN", "GUPTA^ASHA", ""]
INSTITUTIONS = ["NOCTIS GENERAL", "RIVERSIDE CLINIC", "NORTH IMAGING CENTRE"]
FIRST_DATE = "2016-01-01"
DAYS = 3653  # ten years of study dates


@dataclass(frozen=True)
class FillPlan:
    """How many rows of each level; every study has the same shape (series_per_study x instances_per_series)."""

    studies: int
    series_per_study: int
    instances_per_series: int
    patients: int

    @property
    def series(self) -> int:
        return self.studies * self.series_per_study

    @property
    def instances(self) -> int:
        return self.series * self.instances_per_series


def fill_plan(*, instances: int, per_study: int = 100, series_per_study: int = 4) -> FillPlan:
    """The plan closest to `instances` with `per_study` instances per study in `series_per_study` series
    (1.5 studies per patient on average)."""
    if instances <= 0:
        raise ValueError("instances must be positive")
    if per_study <= 0 or series_per_study <= 0 or per_study % series_per_study:
        raise ValueError("per_study must be a positive multiple of series_per_study")
    studies = max(1, round(instances / per_study))
    return FillPlan(
        studies=studies,
        series_per_study=series_per_study,
        instances_per_series=per_study // series_per_study,
        patients=max(1, math.ceil(studies / 1.5)),
    )


@dataclass(frozen=True)
class IdBase:
    """The first id of each table the fill may use (max(id) + 1 when it starts)."""

    patient: int
    study: int
    series: int
    instance: int


_PATIENTS = """
    INSERT INTO pacs_patient (id, patient_id, issuer_of_patient_id, patient_name, birth_date, sex, created_at,
                              updated_at{extra_columns})
    SELECT %(patient_base)s + g, 'SYN' || %(run)s::text || '-' || g, '',
           (%(heads)s::text[])[1 + (g * 7 + g / 97) %% %(n_heads)s]
             || (%(tails)s::text[])[1 + (g * 11 + g / 89) %% %(n_tails)s]
             || '^' || (%(given)s::text[])[1 + (g * 13 + g / 31) %% %(n_given)s],
           date '1930-01-01' + ((g * 7919) %% 30000), CASE WHEN g %% 2 = 0 THEN 'F' ELSE 'M' END,
           now(), now(){extra_values}
    FROM generate_series(0, %(patients)s - 1) g"""

# Study g has modality STUDY_MODALITY[1 + hash(g) % 20], a date spread over DAYS by a multiplicative hash, and a
# patient chosen so that every patient has at least one study.
_STUDY_MODALITY_INDEX = "(1 + ((g * 2654435761) %% 1000003) %% %(n_modalities)s)"
_STUDIES = f"""
    INSERT INTO pacs_study (id, study_instance_uid, patient_id, study_date, study_time, accession_number, study_id,
                            study_description, referring_physician_name, institution_name, modalities_in_study,
                            number_of_series, number_of_instances, calling_ae, received_at, updated_at{{extra_columns}})
    SELECT %(study_base)s + g, %(uid_prefix)s::text || '.1.' || g, %(patient_base)s + (g %% %(patients)s),
           %(first_date)s::date + ((g * 48271) %% %(days)s),
           time '07:00' + make_interval(secs => (g * 69621) %% 43200),
           'A' || %(run)s::text || lpad(g::text, 7, '0'), (1 + g %% 99999)::text,
           (%(descriptions)s::text[])[1 + g %% %(n_descriptions)s],
           (%(physicians)s::text[])[1 + (g / 3) %% %(n_physicians)s],
           (%(institutions)s::text[])[1 + g %% %(n_institutions)s],
           CASE m.modality WHEN 'PT' THEN 'CT\\PT' ELSE m.modality END,
           %(series_per_study)s, %(per_study)s, 'BENCH', now(), now(){{extra_values}}
    FROM generate_series(0, %(studies)s - 1) g,
         LATERAL (SELECT (%(modalities)s::text[])[{_STUDY_MODALITY_INDEX}] AS modality) m"""  # noqa: S608

# A PET/CT's first series is its CT.
_SERIES = f"""
    INSERT INTO pacs_series (id, series_instance_uid, study_id, modality, series_number, series_description,
                             body_part_examined, series_date, series_time, number_of_instances, thumbnail, updated_at
                             {{extra_columns}})
    SELECT %(series_base)s + g * %(series_per_study)s + k, %(uid_prefix)s::text || '.2.' || g || '.' || (k + 1),
           %(study_base)s + g, CASE WHEN m.modality = 'PT' AND k = 0 THEN 'CT' ELSE m.modality END, k + 1,
           m.modality || ' series ' || (k + 1), (%(body_parts)s::text[])[1 + g %% %(n_body_parts)s],
           %(first_date)s::date + ((g * 48271) %% %(days)s), time '07:00' + make_interval(secs => (g * 69621) %% 43200),
           %(per_series)s, '', now(){{extra_values}}
    FROM generate_series(0, %(studies)s - 1) g
         CROSS JOIN generate_series(0, %(series_per_study)s - 1) k,
         LATERAL (SELECT (%(modalities)s::text[])[{_STUDY_MODALITY_INDEX}] AS modality) m"""  # noqa: S608

# The instances of studies [%(from_study)s, %(to_study)s): the statement runs once per chunk, to show progress.
# attrs holds what the SCP's receipt keeps per instance (tests/contracts/receipt.json), as DICOM text.
_INSTANCES = """
    INSERT INTO pacs_instance (id, sop_instance_uid, series_id, sop_class_uid, instance_number, transfer_syntax_uid,
                               path, size_bytes, digest, "rows", "columns", number_of_frames, attrs, received_at,
                               indexed_at{extra_columns})
    SELECT %(instance_base)s + n * %(per_series)s + j, uid, se.id, (%(sop_classes)s::jsonb) ->> se.modality, j + 1,
           '1.2.840.10008.1.2.1', 'synthetic/' || uid || '.dcm', 2 * matrix * matrix + 1200,
           'sha256:' || encode(sha256(convert_to(uid, 'UTF8')), 'hex'), matrix, matrix, NULL,
           jsonb_build_object(
               'InstanceNumber', (j + 1)::text, 'Rows', matrix::text, 'Columns', matrix::text,
               'BitsAllocated', '16', 'PhotometricInterpretation', 'MONOCHROME2',
               'ImageType', 'ORIGINAL\\PRIMARY\\AXIAL',
               'SliceThickness', '1.0', 'SliceLocation', (j * 1.25)::text,
               'ImagePositionPatient', '-250\\-250\\' || (j * 1.25)::text,
               'ImageOrientationPatient', '1\\0\\0\\0\\1\\0', 'PixelSpacing', '0.7\\0.7',
               'ContentDate', to_char(se.series_date, 'YYYYMMDD'), 'ContentTime', to_char(se.series_time, 'HH24MISS')),
           now(), now(){extra_values}
    FROM (SELECT s.id, s.id - %(series_base)s AS n, s.modality, s.series_date, s.series_time,
                 ((%(matrix)s::jsonb) ->> s.modality)::int AS matrix
          FROM pacs_series s
          WHERE s.id >= %(series_base)s + %(from_study)s * %(series_per_study)s
            AND s.id < %(series_base)s + %(to_study)s * %(series_per_study)s) se
         CROSS JOIN generate_series(0, %(per_series)s - 1) j,
         LATERAL (SELECT %(uid_prefix)s::text || '.3.' || se.n || '.' || (j + 1) AS uid) u"""

FILLED_COLUMNS = {
    "pacs_patient": _PATIENTS,
    "pacs_study": _STUDIES,
    "pacs_series": _SERIES,
    "pacs_instance": _INSTANCES,
}
# Columns other features add to these tables (NOT NULL, with only a Django-side default) get that default.
KNOWN_DEFAULTS = {("pacs_study", "status"): "'unread'", ("pacs_study", "priority"): "'routine'"}
EMPTY_BY_TYPE = {
    "character varying": "''",
    "text": "''",
    "integer": "0",
    "bigint": "0",
    "smallint": "0",
    "numeric": "0",
    "double precision": "0",
    "boolean": "false",
    "timestamp with time zone": "now()",
    "date": "current_date",
    "jsonb": "'{}'::jsonb",
}


def extra_values(table: str, missing: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(column, SQL expression) for the NOT NULL columns without a database default that the fill does not
    name: [(column, data_type)] as information_schema.columns reports them."""
    out = []
    for column, data_type in missing:
        expression = KNOWN_DEFAULTS.get((table, column)) or EMPTY_BY_TYPE.get(data_type)
        if expression is None:
            raise ValueError(f"{table}.{column} ({data_type}) is NOT NULL without a default: teach ops/index_fill.py")
        out.append((column, expression))
    return out


def _with_extras(statement: str, extras: list[tuple[str, str]]) -> str:
    return statement.format(
        extra_columns="".join(f", {column}" for column, _ in extras),
        extra_values="".join(f", {expression}" for _, expression in extras),
    )


SEQUENCES_ADVANCE = [
    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608
    for table in ("pacs_patient", "pacs_study", "pacs_series", "pacs_instance")
]


def fill_parameters(plan: FillPlan, base: IdBase, *, run: str) -> dict[str, Any]:
    """The binds shared by the fill statements."""
    return {
        "run": run,
        "uid_prefix": f"{UID_ROOT}.{run}",
        "patient_base": base.patient,
        "study_base": base.study,
        "series_base": base.series,
        "instance_base": base.instance,
        "patients": plan.patients,
        "studies": plan.studies,
        "series_per_study": plan.series_per_study,
        "per_series": plan.instances_per_series,
        "per_study": plan.series_per_study * plan.instances_per_series,
        "heads": SURNAME_HEADS,
        "n_heads": len(SURNAME_HEADS),
        "tails": SURNAME_TAILS,
        "n_tails": len(SURNAME_TAILS),
        "given": GIVEN_NAMES,
        "n_given": len(GIVEN_NAMES),
        "modalities": STUDY_MODALITY,
        "n_modalities": len(STUDY_MODALITY),
        "descriptions": STUDY_DESCRIPTIONS,
        "n_descriptions": len(STUDY_DESCRIPTIONS),
        "body_parts": BODY_PARTS,
        "n_body_parts": len(BODY_PARTS),
        "physicians": PHYSICIANS,
        "n_physicians": len(PHYSICIANS),
        "institutions": INSTITUTIONS,
        "n_institutions": len(INSTITUTIONS),
        "first_date": FIRST_DATE,
        "days": DAYS,
        "sop_classes": _json(SOP_CLASS),
        "matrix": _json(MATRIX),
    }


def _json(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def study_chunks(plan: FillPlan, *, chunk_instances: int = 100_000) -> list[tuple[int, int]]:
    """[from, to) study ranges of about `chunk_instances` instances each, covering every study once."""
    per_study = plan.series_per_study * plan.instances_per_series
    step = max(1, chunk_instances // per_study)
    return [(start, min(start + step, plan.studies)) for start in range(0, plan.studies, step)]


def fill_statements(
    plan: FillPlan, base: IdBase, *, run: str, extras: dict[str, list[tuple[str, str]]] | None = None
) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, statement, binds) in execution order: patients, studies, series, instances by chunks, sequences.
    `extras`: per table, (column, expression) pairs to add (see extra_values)."""
    extras = extras or {}
    statements = {table: _with_extras(statement, extras.get(table, [])) for table, statement in FILLED_COLUMNS.items()}
    params = fill_parameters(plan, base, run=run)
    steps: list[tuple[str, str, dict[str, Any]]] = [
        (f"{plan.patients} patients", statements["pacs_patient"], params),
        (f"{plan.studies} studies", statements["pacs_study"], params),
        (f"{plan.series} series", statements["pacs_series"], params),
    ]
    per_study = plan.series_per_study * plan.instances_per_series
    for start, end in study_chunks(plan):
        label = f"instances of studies {start}-{end - 1} ({(end - start) * per_study})"
        steps.append((label, statements["pacs_instance"], {**params, "from_study": start, "to_study": end}))
    steps += [("sequences", statement, {}) for statement in SEQUENCES_ADVANCE]
    return steps


def id_base_read(conn: Any) -> IdBase:
    """The next free id of each table (psycopg connection)."""
    values = [
        conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0]  # noqa: S608
        for table in ("pacs_patient", "pacs_study", "pacs_series", "pacs_instance")
    ]
    return IdBase(*values)


_UNFILLED = """
    SELECT column_name, data_type FROM information_schema.columns
    WHERE table_schema = current_schema() AND table_name = %s AND is_nullable = 'NO' AND column_default IS NULL
      AND is_identity = 'NO' ORDER BY ordinal_position"""


def extras_read(conn: Any) -> dict[str, list[tuple[str, str]]]:
    """For each filled table, the extra (column, expression) pairs its current schema needs (psycopg connection)."""
    import re

    extras = {}
    for table, statement in FILLED_COLUMNS.items():
        named = statement[statement.index("(") + 1 : statement.index(")")]
        filled = {name.strip().strip('"') for name in re.split(r"[,\s]+", named.replace("{extra_columns}", ""))}
        missing = [(c, t) for c, t in conn.execute(_UNFILLED, (table,)).fetchall() if c not in filled]
        extras[table] = extra_values(table, missing)
    return extras


def _typed(params: dict[str, Any]) -> dict[str, Any]:
    """Integers as int4: psycopg would send small ones as int2, and int2 arithmetic in the statements overflows."""
    from psycopg.types.numeric import Int4

    return {k: Int4(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in params.items()}


def index_fill(
    database_url: str, plan: FillPlan, *, run: str, progress: Callable[[str], None] = print
) -> dict[str, float]:
    """Run the fill in one transaction (synchronous_commit off), then VACUUM ANALYZE the four tables.

    Returns seconds per phase ("insert", "vacuum_analyze")."""
    import psycopg

    timings: dict[str, float] = {}
    start = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        base = id_base_read(conn)
        for label, statement, params in fill_statements(plan, base, run=run, extras=extras_read(conn)):
            step = time.perf_counter()
            conn.execute(statement, _typed(params) or None)
            progress(f"  {label}: {time.perf_counter() - step:.1f}s")
        conn.commit()
    timings["insert"] = time.perf_counter() - start
    start = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) pacs_patient, pacs_study, pacs_series, pacs_instance")
    timings["vacuum_analyze"] = time.perf_counter() - start
    return timings
