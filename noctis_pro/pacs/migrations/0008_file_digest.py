"""The file's digest names its algorithm: `sha256` becomes `digest`, "<algorithm>:<hex>" (contracts.receipt).

Rows written so far hold SHA-256 hex and get the "sha256:" prefix (no file is read); from now on the SCP writes
"blake3:<hex>".
"""

from django.db import migrations, models

PREFIX = "UPDATE {table} SET digest = 'sha256:' || digest WHERE digest NOT LIKE '%:%'"
# Going back is possible only while every digest is SHA-256: BLAKE3 ones would need their files hashed again.
UNPREFIX = """
DO $$ BEGIN
    IF EXISTS (SELECT 1 FROM {table} WHERE digest NOT LIKE 'sha256:%') THEN
        RAISE EXCEPTION '{table} holds digests other than SHA-256 (files stored since pacs 0008); '
            'going back to 0007 would lose them';
    END IF;
END $$;
UPDATE {table} SET digest = substr(digest, length('sha256:') + 1)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("pacs", "0007_ingest_index_trim"),
    ]

    operations = [
        *(
            op
            for model, table in (("receipt", "pacs_receipt"), ("instance", "pacs_instance"))
            for op in (
                migrations.RenameField(model_name=model, old_name="sha256", new_name="digest"),
                migrations.AlterField(model_name=model, name="digest", field=models.CharField(max_length=71)),
                migrations.RunSQL(PREFIX.format(table=table), UNPREFIX.format(table=table)),
            )
        ),
    ]
