"""Migrations that change data, run forwards and back on the test database."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor

BEFORE_DIGEST = ("pacs", "0007_ingest_index_trim")
DIGEST = ("pacs", "0008_file_digest")
RECEIPT = (
    "INSERT INTO pacs_receipt (sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid,"
    " transfer_syntax_uid, path, size_bytes, {column}, source, attrs)"
    " VALUES (%s, '1.2.840.10008.5.1.4.1.1.2', '1.2.3', '1.2.3.4', '1.2.840.10008.1.2.1', 'a/b/c.dcm', 1, %s,"
    " 'dimse', '{{}}')"
)


def migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target])


def digests() -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sop_instance_uid, digest FROM pacs_receipt")
        return dict(cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_file_digest_migration_names_the_algorithm_and_will_not_lose_blake3_digests() -> None:
    sha256_hex = "ab" * 32
    migrate(BEFORE_DIGEST)
    try:
        with connection.cursor() as cursor:
            cursor.execute(RECEIPT.format(column="sha256"), ["9.1", sha256_hex])
        migrate(DIGEST)
        # Rows from before keep their SHA-256, now named as such; nothing else changed.
        assert digests() == {"9.1": f"sha256:{sha256_hex}"}

        # Back again while every digest is SHA-256: the old column and values return.
        migrate(BEFORE_DIGEST)
        with connection.cursor() as cursor:
            cursor.execute("SELECT sha256 FROM pacs_receipt WHERE sop_instance_uid = '9.1'")
            assert cursor.fetchone() == (sha256_hex,)
        migrate(DIGEST)

        # A file stored since has a BLAKE3 digest, which 0007 could not hold: going back is refused.
        with connection.cursor() as cursor:
            cursor.execute(RECEIPT.format(column="digest"), ["9.2", "blake3:" + "cd" * 32])
        with pytest.raises(DatabaseError, match="digests other than SHA-256"):
            migrate(BEFORE_DIGEST)
        assert digests() == {"9.1": f"sha256:{sha256_hex}", "9.2": "blake3:" + "cd" * 32}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
