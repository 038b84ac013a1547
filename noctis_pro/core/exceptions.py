"""Domain exceptions. Each web edge maps them to HTTP in one place (core.middleware.DomainErrorMiddleware)."""


class NoctisError(Exception):
    """Base of the domain errors; `status` is the HTTP status an edge answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequestError(NoctisError):
    status = 400


class UnknownStudyError(NoctisError):
    status = 404


class UnknownSeriesError(NoctisError):
    status = 404


class UnknownAnalyzerError(NoctisError):
    status = 400
