"""Certificates for the TLS tests, made at test time with `cryptography` (through `mock_server.tls`) and
never committed: one CA the client trusts, a good server certificate, and the three a client must
refuse — issued by another CA, expired, or for another host name."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

from mock_server.tls import Issued, issue, new_authority, server_context

LOCAL_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True, slots=True)
class Certificates:
    ca_bundle: str
    """The PEM file of the CA the client trusts."""
    good: ssl.SSLContext
    other_ca: ssl.SSLContext
    """The right names, but signed by a CA the client does not trust."""
    expired: ssl.SSLContext
    wrong_host: ssl.SSLContext
    """The trusted CA's, but for other.example only."""
    authority: Issued
    server: Issued


def make_certificates(directory: Path) -> Certificates:
    trusted, stranger = new_authority("Test CA"), new_authority("Another CA")
    now = datetime.datetime.now(datetime.UTC)
    server = issue(trusted, LOCAL_NAMES)
    ca_bundle = directory / "ca.pem"
    ca_bundle.write_bytes(trusted.certificate_pem)
    return Certificates(
        ca_bundle=str(ca_bundle),
        good=server_context(server),
        other_ca=server_context(issue(stranger, LOCAL_NAMES)),
        expired=server_context(
            issue(
                trusted,
                LOCAL_NAMES,
                not_before=now - datetime.timedelta(days=10),
                not_after=now - datetime.timedelta(days=1),
            )
        ),
        wrong_host=server_context(issue(trusted, ["other.example"])),
        authority=trusted,
        server=server,
    )


def write_pair(directory: Path, issued: Issued) -> tuple[Path, Path]:
    """`issued` as a certificate file and a key file (for `--tls-cert/--tls-key`)."""
    cert, key = directory / "server.pem", directory / "server-key.pem"
    cert.write_bytes(issued.certificate_pem)
    key.write_bytes(issued.key_pem)
    return cert, key
