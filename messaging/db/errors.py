"""Telling a database that is away (retry, or answer 503) from any other failure."""

from __future__ import annotations

from sqlalchemy import exc

# PostgreSQL SQLSTATEs of an unreachable or unavailable server: connection exceptions (08...), an
# administrator or crash shutdown, a server that cannot connect now (57P01-57P03), too many
# connections (53300), a full disk (53100).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "53100")
_UNAVAILABLE_SQLITE = (
    "database is locked",
    "unable to open database file",
    "disk i/o error",
    "database is full",
)


def is_unavailable(error: BaseException) -> bool:
    """True if error means the database cannot be used right now (it may be later), as opposed to
    a statement that will fail again however often it is retried."""
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    sqlstate = getattr(error.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    if isinstance(error, exc.OperationalError):
        message = str(error.orig).lower()
        # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all.
        return error.orig.__class__.__module__.startswith("psycopg") or message.startswith(
            _UNAVAILABLE_SQLITE
        )
    return False
