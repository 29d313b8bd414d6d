"""What went wrong with a TLS connection, in words a person can act on.

OpenSSL reports a failed verification as a number and a terse message ("certificate has expired",
"unable to get local issuer certificate"). `certificate_problem` sorts it into the handful of cases an
operator meets — an expired certificate, one issued for another host name, one from a CA the client
does not trust — so the connector's `TlsError` and the harness's one-line preflight say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) for the cases worth naming.
_NOT_YET_VALID = 9
_EXPIRED = 10
_UNTRUSTED = (2, 18, 19, 20, 21)  # unknown issuer, self-signed leaf or chain, chain that does not verify
_HOST_MISMATCH = (62, 64)  # host name, IP address


@dataclass(frozen=True, slots=True)
class CertificateProblem:
    reason: str
    """`expired`, `not_yet_valid`, `host_mismatch`, `untrusted` or `invalid`."""
    summary: str
    """What the server presented, e.g. "an expired certificate"."""
    detail: str
    """OpenSSL's own message."""


def certificate_problem(error: BaseException) -> CertificateProblem:
    """The problem an `ssl.SSLCertVerificationError` reports (its `verify_code` and `verify_message`)."""
    code = getattr(error, "verify_code", None)
    detail = str(getattr(error, "verify_message", None) or error).rstrip(".")
    if code == _EXPIRED:
        return CertificateProblem("expired", "an expired certificate", detail)
    if code == _NOT_YET_VALID:
        return CertificateProblem("not_yet_valid", "a certificate that is not valid yet (check both clocks)", detail)
    if code in _HOST_MISMATCH:
        return CertificateProblem("host_mismatch", "a certificate issued for another host name", detail)
    if code in _UNTRUSTED:
        return CertificateProblem("untrusted", "a certificate from a CA the client does not trust", detail)
    return CertificateProblem("invalid", "a certificate that does not verify", detail)


def trusted_cas(ca_bundle: str | None) -> str:
    """Which CAs a client trusts, for a message."""
    return f"the CA bundle {ca_bundle}" if ca_bundle else "the system's CAs"


def describe(url: str, problem: CertificateProblem, ca_bundle: str | None) -> str:
    """One line: what the server presented, OpenSSL's words, and what the client trusted."""
    return f"TLS: {url} presented {problem.summary} ({problem.detail}); the client trusts {trusted_cas(ca_bundle)}"


def handshake_problem(url: str, error: BaseException) -> str:
    """One line for a TLS failure that is not about the certificate."""
    text = str(error)
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return f"TLS: {url} does not speak TLS; use http:// if it is a plain-HTTP server"
    return f"TLS: the handshake with {url} failed: {text.splitlines()[0][:200] if text else type(error).__name__}"
