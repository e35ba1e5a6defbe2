"""The local stack's certificate authority: made on first start, kept in the state
folder, and used by the Kafka brokers (PEM key stores) and every client (the CA file).

A deployment brings its own certificates (``MEDSTREAM_KAFKA_CA_FILE`` for clients);
this CA exists so that the development stack runs TLS exactly as production does,
instead of a plaintext shortcut. Written with ``cryptography`` rather than shelling out
to ``openssl``/``keytool``: Kafka reads PEM key stores directly (KIP-651), so no Java
key store is needed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Names the brokers answer to: the local stack on loopback, and compose's service name.
BROKER_HOSTS = ("127.0.0.1", "localhost", "kafka")
_CA_DAYS = 3650
_LEAF_DAYS = 825


@dataclass(frozen=True)
class TlsFiles:
    """The CA certificate (public: every client trusts it) and the brokers' PEM key
    store (private key and certificate chain, mode 0600)."""

    ca_cert: Path
    broker_keystore: Path


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MedStream local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _make_ca(folder: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = _private_key()
    now = dt.datetime.now(dt.UTC)
    name = _name("MedStream local development CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(
        folder / "ca-key.pem",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    (folder / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _load_ca(folder: Path) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((folder / "ca-key.pem").read_bytes(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"{folder / 'ca-key.pem'} is not the RSA key this module writes")
    return cert, key


def _san(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def ensure_local_ca(folder: Path, hosts: tuple[str, ...] = BROKER_HOSTS) -> TlsFiles:
    """The local CA and a broker certificate for ``hosts``, made once in ``folder``
    (kept across restarts; a missing or expiring broker certificate is reissued)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = TlsFiles(folder / "ca.pem", folder / "broker.pem")
    if (folder / "ca.pem").exists() and (folder / "ca-key.pem").exists():
        ca_cert, ca_key = _load_ca(folder)
    else:
        ca_cert, ca_key = _make_ca(folder)
        files.broker_keystore.unlink(missing_ok=True)
    now = dt.datetime.now(dt.UTC)
    if files.broker_keystore.exists():
        current = x509.load_pem_x509_certificates(files.broker_keystore.read_bytes())[0]
        if current.not_valid_after_utc - now > dt.timedelta(days=30):
            return files
    key = _private_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("medstream-kafka"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(hosts), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Kafka's PEM key store: the unencrypted PKCS#8 key, then the chain, in one file
    # only the stack's user can read.
    _write_private(
        files.broker_keystore,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM),
    )
    return files
