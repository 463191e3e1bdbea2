"""Why a license key or certificate is refused: a stable reason code and a readable message."""

from __future__ import annotations

from connectsw.core.errors import ConnectSWError, ExitCode


class LicenseRefused(ConnectSWError):
    """A key or certificate is not accepted; :attr:`reason` is the stable code.

    Codes (reference §3.1's validator, plus certificates): ``invalid_format``,
    ``not_found``, ``expired``, ``suspended``, ``revoked``, ``rate_limited``,
    ``malformed_certificate``, ``tampered_certificate``. Messages never contain
    the key itself.
    """

    exit_code = ExitCode.NOT_ALLOWED

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = reason


class InvalidLicenseRequest(ConnectSWError):
    """An operator's request about licenses is invalid (e.g. a malformed e-mail)."""

    code = "invalid_request"
    exit_code = ExitCode.INVALID_INPUT
