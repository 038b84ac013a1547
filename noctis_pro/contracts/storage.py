"""Where an instance lives under STORAGE_ROOT: <StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm (relative path)."""

from noctis_pro.contracts.uids import uid_problem


class InvalidUidError(ValueError):
    def __init__(self, name: str, value: str | None, problem: str) -> None:
        super().__init__(f"{name} {value!r} is {problem}")
        self.name = name
        self.value = value
        self.problem = problem


def instance_relpath(*, study_uid: str, series_uid: str, sop_instance_uid: str) -> str:
    for name, value in (
        ("StudyInstanceUID", study_uid),
        ("SeriesInstanceUID", series_uid),
        ("SOPInstanceUID", sop_instance_uid),
    ):
        problem = uid_problem(value)
        if problem is not None:
            raise InvalidUidError(name, value, problem)
    return f"{study_uid}/{series_uid}/{sop_instance_uid}.dcm"
