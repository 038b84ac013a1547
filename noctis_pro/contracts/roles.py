"""Roles and what each may do: the ONE definition, read by Django (noctis_pro.accounts.roles) and FastAPI
(fastapi_app.deps). Pure Python, no Django import.

A role is a Django group of the same name; a superuser is an admin whatever its groups. A user with no role may
log in but may do nothing (every page and API route answers 403).
"""

from __future__ import annotations

from collections.abc import Iterable

ADMIN = "admin"
RADIOLOGIST = "radiologist"
TECHNOLOGIST = "technologist"
REFERRER = "referrer"
ROLES = (ADMIN, RADIOLOGIST, TECHNOLOGIST, REFERRER)

# Permissions, named <object>.<action>.
STUDY_VIEW = "study.view"  # worklist, study page, REST and DICOMweb reads, /ws events
STUDY_STORE = "study.store"  # STOW-RS
STUDY_ASSIGN = "study.assign"  # take a study ("assign to me")
STUDY_PRIORITY = "study.priority"  # change a study's priority
REPORT_VIEW = "report.view"  # read and download signed reports
REPORT_VIEW_DRAFT = "report.view_draft"  # read a draft before it is signed
REPORT_WRITE = "report.write"  # write drafts and addenda
REPORT_SIGN = "report.sign"  # sign (a signed report never changes)
EXPORT = "study.export"  # download or export images
ADMIN_SITE = "admin.site"  # /admin/: users, facilities, nodes, templates
AUDIT_VIEW = "audit.view"  # search the audit log
ANALYSIS_REQUEST = "analysis.request"  # ask for an AI analysis from the study page

PERMISSIONS = (
    STUDY_VIEW,
    STUDY_STORE,
    STUDY_ASSIGN,
    STUDY_PRIORITY,
    REPORT_VIEW,
    REPORT_VIEW_DRAFT,
    REPORT_WRITE,
    REPORT_SIGN,
    EXPORT,
    ADMIN_SITE,
    AUDIT_VIEW,
    ANALYSIS_REQUEST,
)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    ADMIN: frozenset(PERMISSIONS),
    RADIOLOGIST: frozenset(
        {
            STUDY_VIEW,
            STUDY_ASSIGN,
            STUDY_PRIORITY,
            REPORT_VIEW,
            REPORT_VIEW_DRAFT,
            REPORT_WRITE,
            REPORT_SIGN,
            EXPORT,
            ANALYSIS_REQUEST,
        }
    ),
    # Technologists run the scanners: they see and send studies and set priority, never write or sign reports.
    TECHNOLOGIST: frozenset({STUDY_VIEW, STUDY_STORE, STUDY_PRIORITY, REPORT_VIEW, REPORT_VIEW_DRAFT}),
    # Referring physicians read images and signed reports of their facilities' patients.
    REFERRER: frozenset({STUDY_VIEW, REPORT_VIEW}),
}


def is_admin(*, is_superuser: bool, groups: Iterable[str]) -> bool:
    return is_superuser or ADMIN in set(groups)


def permissions_for(*, is_superuser: bool, groups: Iterable[str]) -> frozenset[str]:
    """Everything the user's roles allow (the union over its groups)."""
    names = set(groups)
    if is_admin(is_superuser=is_superuser, groups=names):
        return ROLE_PERMISSIONS[ADMIN]
    allowed: set[str] = set()
    for name in names:
        allowed |= ROLE_PERMISSIONS.get(name, frozenset())
    return frozenset(allowed)
