"""A throwaway self-signed certificate for loopback test servers.

Clients trust it the way they trust a real server: ``SSL_CERT_FILE=<cert file>`` makes
``ssl.create_default_context()`` (and so urllib, urllib3 and the ``sendgrid`` client) load it as
the only trust anchor. Nothing here turns verification off.
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from event_pipeline.files import private_dir, write_private

LOOPBACK_IP, LOOPBACK_NAME = "127.0.0.1", "localhost"
# Long enough for any test session, short enough that a leaked file is worthless soon.
VALIDITY = timedelta(days=2)


def self_signed_pem() -> tuple[bytes, bytes]:
    """(certificate, private key) in PEM for 127.0.0.1 (IP SAN) and localhost (DNS SAN).

    One certificate, no CA: it is its own trust anchor. P-256 rather than RSA because generating
    it takes a millisecond, not a tenth of a second, and every TLS server start makes one. The
    extensions are what X509_STRICT verification (Python 3.13's default) insists on.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "FakeSendGrid test server")])
    now = datetime.now(UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(LOOPBACK_IP)), x509.DNSName(LOOPBACK_NAME)]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS server context with a fresh certificate, and the certificate's path for clients.

    ``directory`` must belong to the caller (a fresh temp dir). ``load_cert_chain`` only reads
    files, so the key spends a moment there as a 0600 file and is deleted once loaded.
    """
    cert_pem, key_pem = self_signed_pem()
    private_dir(directory)
    cert_file = write_private(directory / "ca.pem", cert_pem)
    key_file = write_private(directory / "key.pem", key_pem)
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_file, key_file)
    finally:
        key_file.unlink()
    return context, cert_file
