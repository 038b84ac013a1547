"""A report as PDF (reportlab). Every DICOM and report text is escaped before it reaches reportlab's markup."""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table

from noctis_pro.reports.models import Report
from noctis_pro.worklist.templatetags.dicom import person_name


def _text(value: str) -> str:
    """Plain text as reportlab paragraph markup: escaped, line breaks kept."""
    return escape(value).replace("\n", "<br/>")


def report_pdf(*, report: Report) -> bytes:
    study = report.study
    patient = study.patient
    styles = getSampleStyleSheet()
    body, heading = styles["BodyText"], styles["Heading2"]
    rows = [
        ("Patient", person_name(patient.patient_name)),
        ("Patient ID", patient.patient_id),
        ("Born", f"{patient.birth_date or '—'} {patient.sex}"),
        ("Study", f"{study.study_date or '—'} {study.study_description}"),
        ("Accession", study.accession_number or "—"),
        ("Modalities", ", ".join(study.modalities) or "—"),
        ("Referring", person_name(study.referring_physician_name) or "—"),
        ("Study UID", study.study_instance_uid),
    ]
    status = (
        f"Signed by {report.finalized_by.get_username() if report.finalized_by else '—'} "
        f"at {report.finalized_at:%Y-%m-%d %H:%M} UTC"
        if report.is_final and report.finalized_at
        else "DRAFT — not signed"
    )
    story = [
        Paragraph("Radiology report", styles["Title"]),
        Table(
            [[Paragraph(f"<b>{_text(k)}</b>", body), Paragraph(_text(str(v)), body)] for k, v in rows],
            colWidths=[35 * mm, 130 * mm],
        ),
        Spacer(1, 6 * mm),
        Paragraph("Findings", heading),
        Paragraph(_text(report.findings) or "—", body),
        Paragraph("Impression", heading),
        Paragraph(_text(report.impression) or "—", body),
    ]
    for addendum in report.addenda.all():
        author = addendum.author.get_username() if addendum.author else "—"
        story += [
            Paragraph(f"Addendum · {_text(author)} · {addendum.created_at:%Y-%m-%d %H:%M} UTC", heading),
            Paragraph(_text(addendum.text), body),
        ]
    story += [Spacer(1, 8 * mm), Paragraph(_text(status), styles["Italic"])]
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer, pagesize=A4, title="Radiology report", author="NoctisPro", leftMargin=20 * mm, rightMargin=20 * mm
    )
    doc.build(story)
    return buffer.getvalue()
