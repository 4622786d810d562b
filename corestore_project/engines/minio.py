"""The production object engine: MinIO, driven through its admin API.

Each tenant is a MinIO user whose only policy allows its own bucket; the root
credentials are derived from the master secret and passed to the server.
"""

import json
import shutil

from django.conf import settings
from minio.credentials import StaticProvider
from minio.deleteobjects import DeleteObject
from minio.error import MinioAdminException, S3Error
from minio.minioadmin import MinioAdmin
from urllib3.exceptions import HTTPError

from corestore_project import derive

from .base import (
    EngineUnavailable,
    ObjectEngine,
    ProcessSpec,
    connect_host,
    ensure_dir,
    port_open,
)


def bucket_policy(bucket: str) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetBucketLocation",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Effect": "Allow",
                "Action": [
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }


class MinioEngine(ObjectEngine):
    kind = "minio"
    embedded = False
    limits = []

    def prepare(self) -> None:
        ensure_dir(settings.DATA_DIR / "s3")

    def processes(self) -> list[ProcessSpec]:
        access_key, secret_key = self.admin_credentials()
        command = [
            shutil.which("minio") or "minio",
            "server",
            str(settings.DATA_DIR / "s3"),
            "--address",
            f"{settings.BIND_ADDRESS}:{settings.S3_PORT}",
            "--console-address",
            "127.0.0.1:0",
        ]
        environment = {
            "MINIO_ROOT_USER": access_key,
            "MINIO_ROOT_PASSWORD": secret_key,
            "MINIO_REGION": settings.REGION,
            "MINIO_BROWSER": "off",
        }
        return [
            ProcessSpec(
                name="objectstorage",
                command=command,
                environment=environment,
                priority=20,
            )
        ]

    def ready(self) -> bool:
        return port_open(connect_host(), settings.S3_PORT)

    def admin_api(self) -> MinioAdmin:
        access_key, secret_key = self.admin_credentials()
        return MinioAdmin(
            endpoint=f"{connect_host()}:{settings.S3_PORT}",
            credentials=StaticProvider(access_key, secret_key),
            region=settings.REGION,
            secure=False,
        )

    def ensure_tenant(self, bucket: str, access_key: str, service_id: str) -> None:
        _, secret_key = derive.s3_tenant_credentials(settings.MASTER_SECRET, service_id)
        policy_name = f"corestore-{bucket}"
        try:
            client = self.admin_client()
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
            admin = self.admin_api()
            admin.policy_add(policy_name, policy=bucket_policy(bucket))
            admin.user_add(access_key, secret_key)
            admin.policy_set(policy_name, user=access_key)
        except (S3Error, MinioAdminException, HTTPError) as exc:
            raise EngineUnavailable(f"object engine: {type(exc).__name__}") from exc

    def drop_tenant(self, bucket: str, access_key: str, service_id: str) -> None:
        policy_name = f"corestore-{bucket}"
        try:
            admin = self.admin_api()
            for step in (
                lambda: admin.user_remove(access_key),
                lambda: admin.policy_remove(policy_name),
            ):
                try:
                    step()
                except MinioAdminException as exc:
                    if "NoSuch" not in str(exc):
                        raise
            self._remove_bucket(bucket)
        except (S3Error, MinioAdminException, HTTPError) as exc:
            raise EngineUnavailable(f"object engine: {type(exc).__name__}") from exc

    def _remove_bucket(self, bucket: str) -> None:
        client = self.admin_client()
        if not client.bucket_exists(bucket):
            return
        names = (
            DeleteObject(item.object_name)
            for item in client.list_objects(bucket, recursive=True)
        )
        for error in client.remove_objects(bucket, names):
            raise EngineUnavailable(f"object engine: cannot delete {error.name}")
        client.remove_bucket(bucket)

    def bucket_exists(self, bucket: str) -> bool:
        return self.admin_client().bucket_exists(bucket)

    def describe_policy(self, bucket: str) -> str:
        return json.dumps(bucket_policy(bucket))
