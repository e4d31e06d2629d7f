"""The gateway's exceptions: one base, a few specific kinds."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class RoutingConfigError(GatewayError):
    """The routes file is missing, unreadable or inconsistent."""


class SipEngineError(GatewayError):
    """The SIP engine could not start or is not running."""


class CallNotFoundError(GatewayError):
    """No live call has this id."""
