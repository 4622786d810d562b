"""Names and secrets derived from the master secret.

Nothing here is stored: HMAC-SHA256 of the master secret over
"<purpose>:<subject>" gives the same value for the same service every time, so
provisioning is idempotent and the metadata database holds no tenant secret.

Standard library only: the embedded object engine's auth proxy imports this
module on every unknown access key, and must start fast.
"""

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

MASTER_SECRET_FILENAME = "master.secret"
_MIN_SECRET_LENGTH = 16


class MasterSecretError(ValueError):
    pass


def _check(secret: str, origin: str) -> str:
    secret = secret.strip()
    if len(secret) < _MIN_SECRET_LENGTH:
        raise MasterSecretError(
            f"{origin} is shorter than {_MIN_SECRET_LENGTH} characters"
        )
    return secret


def read_master_secret(data_dir: Path, from_env: str | None) -> str | None:
    if from_env:
        return _check(from_env, "the value")
    path = Path(data_dir) / MASTER_SECRET_FILENAME
    try:
        return _check(path.read_text(), str(path))
    except FileNotFoundError:
        return None


def ensure_master_secret(data_dir: Path, from_env: str | None) -> str:
    """Return the master secret, generating <data>/master.secret once if needed."""
    existing = read_master_secret(data_dir, from_env)
    if existing:
        return existing

    path = Path(data_dir) / MASTER_SECRET_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two starts racing on a fresh data dir must not write two secrets.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_master_secret(data_dir, None)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return read_master_secret(data_dir, None)


def digest(master_secret: str, purpose: str, subject: str) -> bytes:
    message = f"{purpose}:{subject}".encode()
    return hmac.new(master_secret.encode(), message, hashlib.sha256).digest()


def derive(master_secret: str, purpose: str, subject: str) -> str:
    """A URL-safe secret of 43 characters (no padding)."""
    raw = digest(master_secret, purpose, subject)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def derive_alnum(master_secret: str, purpose: str, subject: str, length: int) -> str:
    """Upper-case letters and digits, for engines with strict key alphabets."""
    raw = digest(master_secret, purpose, subject)
    return base64.b32encode(raw).decode().rstrip("=")[:length]


def short_hash(subject: str, length: int = 8) -> str:
    """A public, stable suffix that keeps two services' names apart."""
    return hashlib.sha256(subject.encode()).hexdigest()[:length]


def slug(name: str, max_length: int) -> str:
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return cleaned[:max_length].strip("-") or "svc"


# Admin credentials of the engines. The subject is fixed: one node, one admin.
def db_admin_credentials(master_secret: str) -> tuple[str, str]:
    return "corestore-admin", derive(master_secret, "db-admin-password", "node")


def s3_admin_credentials(master_secret: str) -> tuple[str, str]:
    access_key = "CSADMIN" + derive_alnum(master_secret, "s3-admin-key", "node", 13)
    return access_key, derive(master_secret, "s3-admin-secret", "node")


# Tenant credentials, one set per serviceId.
def db_tenant_credentials(master_secret: str, service_id: str) -> tuple[str, str]:
    user = "svc-" + derive_alnum(master_secret, "db-user", service_id, 16).lower()
    return user, derive(master_secret, "db-password", service_id)


def s3_tenant_credentials(master_secret: str, service_id: str) -> tuple[str, str]:
    access_key = "CS" + derive_alnum(master_secret, "s3-key", service_id, 18)
    return access_key, derive(master_secret, "s3-secret", service_id)


def new_token() -> str:
    return secrets.token_urlsafe(32)
