"""HTTPS for the mock: a server context from certificate files, or from a CA made at start-up.

`--tls-cert/--tls-key` (config `server.tls_cert`, `server.tls_key`) serve a certificate you made.
`--tls-self-signed DIR` (config `server.tls_self_signed`) makes a private CA and a server certificate for
localhost, 127.0.0.1, ::1, the listen host and every `--tls-name`, and writes only the CA's certificate
to `DIR/ca.pem`: that is the file a client trusts (`--ca-bundle DIR/ca.pem`, the connector's
`ca_bundle`). The private keys never touch the disk but for the moment `ssl` needs to read them.

The building blocks (`new_authority`, `issue`, `server_context`) are public so tests can make the
certificates a client must refuse: expired, issued by another CA, or for another host name.
Certificates are made with the `cryptography` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mock_server.config import ConfigError, ServerConfig

CA_FILE = "ca.pem"
ALWAYS_NAMED = ("localhost", "127.0.0.1", "::1")
"""Names every self-signed certificate is valid for: a client on the same machine always matches."""
_WILDCARD_HOSTS = ("0.0.0.0", "::", "")
SELF_SIGNED_DAYS = 30


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_authority(name: str = "HostedAI mock CA", *, days: int = SELF_SIGNED_DAYS) -> Issued:
    """A CA that can sign server certificates (and nothing below them)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def _alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue(
    authority: Issued,
    names: Iterable[str],
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Issued:
    """A server certificate for `names` (host names or IP addresses), signed by `authority`. The
    validity defaults to the authority's; tests pass dates in the past to make an expired one."""
    names = list(dict.fromkeys(names))
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = authority.key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or authority.certificate.not_valid_before_utc)
        .not_valid_after(not_after or authority.certificate.not_valid_after_utc)
        .add_extension(x509.SubjectAlternativeName([_alt_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key), critical=False)
        .sign(authority.key, hashes.SHA256())
    )
    return Issued(certificate, key)


def server_context(server: Issued) -> ssl.SSLContext:
    """A TLS server context serving `server`'s certificate. `ssl` reads keys from files only, so the key
    is written to a private temporary directory for the moment it takes to load it."""
    with tempfile.TemporaryDirectory(prefix="hostedai-mock-tls-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert.write_bytes(server.certificate_pem)
        key.touch(mode=0o600)
        key.write_bytes(server.key_pem)
        return _load(cert, key)


def _load(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def self_signed(directory: Path, names: Iterable[str]) -> ssl.SSLContext:
    """A new CA and a server certificate for `names` (and `ALWAYS_NAMED`); the CA's certificate is
    written to `directory/ca.pem` (the directory is created if needed)."""
    authority = new_authority()
    server = issue(authority, [*ALWAYS_NAMED, *names])
    directory.mkdir(parents=True, exist_ok=True)
    # Written whole, then renamed: a client polling for the file never reads half of it.
    partial = directory / f".{CA_FILE}.{os.getpid()}"
    partial.write_bytes(authority.certificate_pem)
    partial.replace(directory / CA_FILE)
    return server_context(server)


def context_for(server: ServerConfig) -> ssl.SSLContext | None:
    """The context the server's config asks for; None for plain HTTP. Unreadable or mismatched files
    are a one-line ConfigError."""
    if server.tls_self_signed is not None:
        names = [*([server.host] if server.host not in _WILDCARD_HOSTS else []), *server.tls_names]
        try:
            return self_signed(Path(server.tls_self_signed), names)
        except OSError as exc:
            raise ConfigError(
                f"server.tls_self_signed {server.tls_self_signed}: cannot write {CA_FILE} there ({exc.strerror})"
            ) from None
    if server.tls_cert is None or server.tls_key is None:
        return None
    for path in (server.tls_cert, server.tls_key):
        if not Path(path).is_file():
            raise ConfigError(f"TLS: cannot read {path}: no such file")
    try:
        return _load(Path(server.tls_cert), Path(server.tls_key))
    except ssl.SSLError as exc:
        why = (
            "the key is not the certificate's"
            if exc.reason == "KEY_VALUES_MISMATCH"
            else "not a PEM certificate and key"
        )
        raise ConfigError(f"TLS: cannot use {server.tls_cert} with {server.tls_key}: {why}") from None
    except OSError as exc:
        raise ConfigError(f"TLS: cannot use {server.tls_cert} with {server.tls_key}: {exc.strerror}") from None


def ca_file(server: ServerConfig) -> Path | None:
    """Where the self-signed mode writes its CA certificate (None in the other modes)."""
    return Path(server.tls_self_signed) / CA_FILE if server.tls_self_signed is not None else None
