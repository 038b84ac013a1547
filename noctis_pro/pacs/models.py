"""The archive's index: Patient > Study > Series > Instance, and the Receipt outbox.

Tables have explicit names because others rely on them: the Rust SCP writes pacs_receipt
(dicom_scp_server/src/receipt.rs) and FastAPI reads all of them (fastapi_app/sql.py). A rename is a migration
plus the Rust and SQL changes, in one commit.
"""

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, Func, Q, Value
from django.db.models.functions import Now, Upper
from django.utils import timezone

from noctis_pro.contracts.receipt import DIGEST_LENGTH

UID_LENGTH = 64


class Patient(models.Model):
    """Identified by (PatientID, IssuerOfPatientID) as sent; the name is the latest one received."""

    patient_id = models.CharField(max_length=64)
    issuer_of_patient_id = models.CharField(max_length=64, blank=True, default="")
    patient_name = models.CharField(max_length=324, blank=True, default="")
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=16, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pacs_patient"
        constraints = [
            models.UniqueConstraint(fields=["patient_id", "issuer_of_patient_id"], name="patient_identity"),
        ]
        indexes = [
            # Case-insensitive name search with wildcards (ILIKE) stays fast at a million rows.
            GinIndex(OpClass(Upper("patient_name"), name="gin_trgm_ops"), name="patient_name_trgm"),
        ]

    def __str__(self) -> str:
        return f"{self.patient_name} ({self.patient_id})"


class StudyStatus(models.TextChoices):
    UNREAD = "unread", "Unread"
    IN_PROGRESS = "in_progress", "In progress"  # opened by a reader, or a draft report exists
    REPORTED = "reported", "Reported"  # a preliminary report: written, not yet signed
    FINAL = "final", "Final"  # the report is signed


class StudyPriority(models.TextChoices):
    STAT = "stat", "STAT"
    URGENT = "urgent", "Urgent"
    ROUTINE = "routine", "Routine"


class Study(models.Model):
    study_instance_uid = models.CharField(max_length=UID_LENGTH, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_date = models.DateField(null=True, blank=True)
    study_time = models.TimeField(null=True, blank=True)
    accession_number = models.CharField(max_length=64, blank=True, default="")
    study_id = models.CharField(max_length=64, blank=True, default="")
    study_description = models.CharField(max_length=255, blank=True, default="")
    referring_physician_name = models.CharField(max_length=324, blank=True, default="")
    institution_name = models.CharField(max_length=128, blank=True, default="")
    # Derived from its series and instances; kept right by pacs.indexing on every change.
    modalities_in_study = models.CharField(max_length=128, blank=True, default="")  # "CT\MR"
    number_of_series = models.PositiveIntegerField(default=0)
    number_of_instances = models.PositiveIntegerField(default=0)
    calling_ae = models.CharField(max_length=16, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Workflow (pacs.workflow): who may see it (contracts.access; NULL = unassigned), where reading stands.
    facility = models.ForeignKey(
        "facilities.Facility", null=True, blank=True, on_delete=models.SET_NULL, related_name="studies"
    )
    status = models.CharField(max_length=12, choices=StudyStatus.choices, default=StudyStatus.UNREAD)
    priority = models.CharField(max_length=8, choices=StudyPriority.choices, default=StudyPriority.ROUTINE)
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_studies"
    )

    class Meta:
        db_table = "pacs_study"
        indexes = [
            models.Index(fields=["status", "-received_at"], name="study_status_received"),
            models.Index(fields=["-study_date", "-study_time"], name="study_date_desc"),
            models.Index(fields=["accession_number"], name="study_accession"),
            models.Index(fields=["-received_at"], name="study_received_desc"),
            GinIndex(OpClass("modalities_in_study", name="gin_trgm_ops"), name="study_modalities_trgm"),
            # ModalitiesInStudy matching (fastapi_app/sql.py: string_to_array(...) && $n): its statistics let the
            # planner see that CT is in 40 % of studies and walk study_date_desc for the first page (64 ms -> 1 ms
            # at 10,000 studies); a two-letter modality has no trigram for the index above.
            GinIndex(
                Func(F("modalities_in_study"), Value("\\"), function="string_to_array"), name="study_modalities_array"
            ),
        ]

    def __str__(self) -> str:
        return self.study_instance_uid

    @property
    def modalities(self) -> list[str]:
        return [m for m in self.modalities_in_study.split("\\") if m]


class Series(models.Model):
    series_instance_uid = models.CharField(max_length=UID_LENGTH, unique=True)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    modality = models.CharField(max_length=16, blank=True, default="")
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=255, blank=True, default="")
    body_part_examined = models.CharField(max_length=64, blank=True, default="")
    series_date = models.DateField(null=True, blank=True)
    series_time = models.TimeField(null=True, blank=True)
    number_of_instances = models.PositiveIntegerField(default=0)
    # Relative to MEDIA_ROOT; made by the thumbnail task.
    thumbnail = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pacs_series"
        indexes = [
            models.Index(fields=["study", "series_number"], name="series_study_number"),
            models.Index(fields=["modality"], name="series_modality"),
        ]

    def __str__(self) -> str:
        return self.series_instance_uid


class Instance(models.Model):
    # Unique by a constraint, not unique=True: that would add a varchar_pattern_ops (LIKE) index, which no
    # query uses (UIDs match exactly) and every ingested instance would pay for.
    sop_instance_uid = models.CharField(max_length=UID_LENGTH)
    # instance_series_number (series, instance_number) serves lookups by series: no index of its own.
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances", db_index=False)
    sop_class_uid = models.CharField(max_length=UID_LENGTH)
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=UID_LENGTH)
    path = models.CharField(max_length=300)  # relative to STORAGE_ROOT
    size_bytes = models.BigIntegerField()
    digest = models.CharField(max_length=DIGEST_LENGTH)  # contracts.receipt: "<algorithm>:<hex>" of the file
    rows = models.IntegerField(null=True, blank=True)
    columns = models.IntegerField(null=True, blank=True)
    number_of_frames = models.IntegerField(null=True, blank=True)
    attrs = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField()
    indexed_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pacs_instance"
        indexes = [models.Index(fields=["series", "instance_number"], name="instance_series_number")]
        constraints = [models.UniqueConstraint(fields=["sop_instance_uid"], name="instance_sop_instance_uid_key")]

    def __str__(self) -> str:
        return self.sop_instance_uid


class Receipt(models.Model):
    """Outbox row: one per SOP Instance UID, the truth of what was stored.

    Written by dicom_scp_server/src/receipt.rs only: STOW-RS uploads reach it as C-STOREs from FastAPI (calling_ae
    DICOM_STOW_AE_TITLE, source "dimse"). Read by
    pacs.indexing. Columns are pinned by tests/contracts/receipt.json.
    """

    sop_instance_uid = models.CharField(max_length=UID_LENGTH)  # unique: see Meta (as Instance's)
    sop_class_uid = models.CharField(max_length=UID_LENGTH)
    study_instance_uid = models.CharField(max_length=UID_LENGTH)
    series_instance_uid = models.CharField(max_length=UID_LENGTH)
    transfer_syntax_uid = models.CharField(max_length=UID_LENGTH)
    path = models.CharField(max_length=300)  # relative to STORAGE_ROOT
    size_bytes = models.BigIntegerField()
    digest = models.CharField(max_length=DIGEST_LENGTH)  # contracts.receipt: "<algorithm>:<hex>" of the file
    calling_ae = models.CharField(max_length=16, blank=True, db_default="")
    called_ae = models.CharField(max_length=16, blank=True, db_default="")
    source = models.CharField(max_length=8)  # contracts.receipt.SOURCE_DIMSE / SOURCE_STOW
    attrs = models.JSONField(default=dict)
    received_at = models.DateTimeField(db_default=Now())
    indexed_at = models.DateTimeField(null=True, blank=True)
    index_attempts = models.PositiveIntegerField(db_default=0)
    index_error = models.TextField(blank=True, db_default="")

    class Meta:
        db_table = "pacs_receipt"  # others rely on it: rename = migration + Rust + SQL in one commit
        indexes = [
            models.Index(fields=["received_at"], condition=Q(indexed_at=None), name="receipt_pending"),
        ]
        constraints = [models.UniqueConstraint(fields=["sop_instance_uid"], name="receipt_sop_instance_uid_key")]

    def __str__(self) -> str:
        return f"receipt {self.pk} {self.sop_instance_uid}"


class Node(models.Model):
    """A remote DICOM application entity (workstation, another PACS) that sends to, asks or receives from us.

    Read by the Rust SCP (ae_title, host, port, enabled, may_*: calling-AE checks and C-MOVE destinations) and
    written by fastapi_app/sql.py (/api/v1/nodes): the capabilities have database defaults for those inserts.
    """

    name = models.CharField(max_length=64, unique=True)
    ae_title = models.CharField(max_length=16, unique=True)  # one AE title, one C-MOVE destination
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    enabled = models.BooleanField(default=True)
    # What the node may do with us: C-STORE to us, C-FIND us, C-MOVE/C-GET from us, and be sent to (forwards,
    # "send to node", C-MOVE destination).
    may_store = models.BooleanField(default=True, db_default=True)
    may_query = models.BooleanField(default=True, db_default=True)
    may_retrieve = models.BooleanField(default=True, db_default=True)
    may_receive = models.BooleanField(default=True, db_default=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "pacs_node"  # the Rust SCP and fastapi_app/sql.py rely on it

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"

    @property
    def capabilities(self) -> list[str]:
        flags = (("store", self.may_store), ("query", self.may_query), ("retrieve", self.may_retrieve))
        return [name for name, on in (*flags, ("receive", self.may_receive)) if on]


class ForwardRule(models.Model):
    """Send every newly indexed instance that matches (blank = any) to `node`."""

    name = models.CharField(max_length=64)
    node = models.ForeignKey(Node, on_delete=models.CASCADE, related_name="rules")
    modality = models.CharField(max_length=16, blank=True, default="")
    calling_ae = models.CharField(max_length=16, blank=True, default="")
    enabled = models.BooleanField(default=True)

    class Meta:
        db_table = "pacs_forwardrule"

    def __str__(self) -> str:
        return f"{self.name} -> {self.node.name}"

    def matches(self, *, modality: str, calling_ae: str) -> bool:
        return (not self.modality or self.modality.upper() == modality.upper()) and (
            not self.calling_ae or self.calling_ae.strip() == calling_ae.strip()
        )


class Transfer(models.Model):
    """One movement of images between us and a node: a send or a rule's forward (C-STORE SCU) or a retrieve
    (C-MOVE SCU with us as the destination). Written by pacs.transfers (Celery) and by fastapi_app/sql.py, which
    inserts pending sends and retrieves: columns it leaves out have database defaults."""

    class Kind(models.TextChoices):
        SEND = "send"
        FORWARD = "forward"
        RETRIEVE = "retrieve"

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING, db_default="pending")
    node = models.ForeignKey(Node, on_delete=models.SET_NULL, null=True, blank=True, related_name="transfers")
    node_name = models.CharField(max_length=64)  # kept when the node is deleted
    study_instance_uid = models.CharField(max_length=UID_LENGTH, blank=True, default="", db_default="")
    series_instance_uid = models.CharField(max_length=UID_LENGTH, blank=True, default="", db_default="")
    sop_instance_uids = models.JSONField(default=list, blank=True, db_default=[])  # forwards: what arrived
    requested_by = models.ForeignKey("auth.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    task_id = models.CharField(max_length=64, blank=True, default="", db_default="")  # Celery's, kept on retries
    total = models.PositiveIntegerField(null=True, blank=True)  # instances to move, once known
    completed = models.PositiveIntegerField(default=0, db_default=0)
    failed = models.PositiveIntegerField(default=0, db_default=0)
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    error = models.TextField(blank=True, default="", db_default="")
    created_at = models.DateTimeField(default=timezone.now, db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now, db_default=Now())

    class Meta:
        db_table = "pacs_transfer"  # fastapi_app/sql.py inserts and reads it
        indexes = [
            models.Index(fields=["-created_at"], name="transfer_created_desc"),
            models.Index(fields=["task_id"], condition=~Q(task_id=""), name="transfer_task"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.study_instance_uid or len(self.sop_instance_uids)} {self.node_name} {self.status}"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.RUNNING)

    @property
    def percent(self) -> int | None:
        if not self.total:
            return 100 if self.status == self.Status.DONE else None
        return min(100, round(100 * (self.completed + self.failed) / self.total))


class SeriesMetadata(models.Model):
    """A series' WADO-RS metadata, built once after indexing (pacs.metadata) so a study opens with one read per
    series: the DICOM JSON objects of its instances in retrieve order, joined by commas (no brackets), gzip-
    compressed, with relative BulkDataURIs (noctis_pro.contracts.dicom_json). Current while `series_updated_at` and
    `instance_count` equal the series' updated_at and number_of_instances; FastAPI (fastapi_app/sql.py) reads it
    then, and the files otherwise."""

    series = models.OneToOneField(Series, on_delete=models.CASCADE, primary_key=True, related_name="metadata_cache")
    data = models.BinaryField()
    instance_count = models.PositiveIntegerField()
    series_updated_at = models.DateTimeField()
    built_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pacs_seriesmetadata"  # fastapi_app/sql.py reads it

    def __str__(self) -> str:
        return f"metadata of series {self.series_id} ({self.instance_count} instances)"
