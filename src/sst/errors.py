"""Exceptions that sst raises on purpose."""


class SstError(Exception):
    """Base class of sst's own errors."""


class ConfigError(SstError):
    """The configuration cannot be used; the message names file, entry and key."""


class ApiError(SstError):
    """An HTTP API error answered as JSON {"error": code, "message": text, ...}."""

    def __init__(self, status, code, message, **details):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = {}

    def body(self):
        return {"error": self.code, "message": self.message, **self.details}


class StorageUnavailableError(SstError):
    """The database cannot be reached; nothing was written."""


class StorageRefusedError(SstError):
    """The database is up but refused a value of the data (a CHECK such as json_valid, a
    value out of range): the request's fault, a 400, never a 503 that looks like an outage."""


class SchemaBehindError(StorageUnavailableError):
    """The database has no sst schema, or an older one: `sst db upgrade` was not run."""
