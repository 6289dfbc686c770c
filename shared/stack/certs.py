"""A self-signed CA and a server certificate for the embedded broker's TLS listener.

Made with the ``openssl`` command (present wherever Python's ssl module is built, and the
project does not depend on the ``cryptography`` package). The CA's key never leaves the
stack's home; clients get the CA certificate (``ca.pem``) to verify the broker by name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TLS_DIR = "tls"
DAYS = 825  # the longest validity clients accept for a server certificate


class CertificateError(RuntimeError):
    """The certificates could not be made."""


@dataclass(frozen=True)
class ServerCertificate:
    ca: Path
    cert: Path
    key: Path


def ensure_server_certificate(home: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> ServerCertificate:
    """The CA and server certificate under ``home/tls``, made once and reused by later starts."""
    folder = home / TLS_DIR
    made = ServerCertificate(ca=folder / "ca.pem", cert=folder / "server.pem", key=folder / "server.key")
    if all(path.is_file() for path in (made.ca, made.cert, made.key)):
        return made
    openssl = shutil.which("openssl")
    if openssl is None:
        raise CertificateError("TLS for the embedded broker needs the openssl command, which is not on PATH")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    names = [f"IP:{h}" if h.replace(".", "").isdigit() else f"DNS:{h}" for h in hosts]
    extensions = folder / "server.ext"
    extensions.write_text(
        f"subjectAltName={','.join(names)}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        encoding="utf-8",
    )
    ca_key = folder / "ca.key"
    csr = folder / "server.csr"
    new_key = ["req", "-newkey", "rsa:2048", "-nodes", "-keyout"]
    ca_args = ["-days", str(DAYS), "-subj", "/CN=Kafka-ML embedded broker CA"]
    sign_args = ["-CAcreateserial", "-out", str(made.cert), "-days", str(DAYS), "-extfile", str(extensions)]
    steps = [
        [openssl, *new_key, str(ca_key), "-x509", "-out", str(made.ca), *ca_args],
        [openssl, *new_key, str(made.key), "-out", str(csr), "-subj", f"/CN={hosts[0]}"],
        [openssl, "x509", "-req", "-in", str(csr), "-CA", str(made.ca), "-CAkey", str(ca_key), *sign_args],
    ]  # fmt: skip
    for argv in steps:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise CertificateError(f"{' '.join(argv[:2])} failed: {result.stderr.strip()[-500:]}")
    for path in (ca_key, made.key):
        os.chmod(path, 0o600)
    csr.unlink(missing_ok=True)
    return made
