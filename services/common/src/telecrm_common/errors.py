"""Exception base of the shared library; each service derives its own from it."""


class TelecrmError(Exception):
    """Base of every error the suite raises on purpose."""


class NotReadyError(TelecrmError):
    """A dependency (database, NATS) is not reachable; health answers 503 with this message."""
