"""Certificates for the tests' TLS servers, made with openssl: a CA, a server certificate for
127.0.0.1 and localhost, and a client certificate, all PEM (keys unencrypted PKCS#8, which
both Kafka's PEM key stores and Redis read)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import NamedTuple


class TlsFiles(NamedTuple):
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: trusting only it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    _openssl(
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.name,
        cwd=folder,
    )
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        key.name,
        "-days",
        "2",
        "-subj",
        f"/CN=enforcer test {name}",
        "-out",
        cert.name,
        cwd=folder,
    )
    return key, cert


def _leaf(folder: Path, name: str, ca_key: Path, ca_cert: Path, san: str) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    ext = folder / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
    _openssl(
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.name,
        cwd=folder,
    )
    _openssl("req", "-new", "-key", key.name, "-subj", f"/CN={name}", "-out", csr.name, cwd=folder)
    _openssl(
        "x509",
        "-req",
        "-in",
        csr.name,
        "-CA",
        ca_cert.name,
        "-CAkey",
        ca_key.name,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        ext.name,
        "-out",
        cert.name,
        cwd=folder,
    )
    return key, cert


def make_tls_files(folder: Path) -> TlsFiles:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca(folder, "ca")
    _, other_ca = _ca(folder, "other-ca")
    server_key, server_cert = _leaf(folder, "server", ca_key, ca_cert, "IP:127.0.0.1,DNS:localhost")
    client_key, client_cert = _leaf(folder, "client", ca_key, ca_cert, "DNS:enforcer-client")
    return TlsFiles(ca_cert, server_cert, server_key, client_cert, client_key, other_ca)
