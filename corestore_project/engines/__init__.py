"""Engine adapters: one small class per database or object engine.

Every adapter answers the same questions: how to start it (for the supervisor),
how to prepare it before the first start, whether it is ready, and how to ensure
or drop one tenant. The stack picks the production engine when its binary is on
PATH and the embedded one otherwise, unless CORESTORE_*_ENGINE forces a choice.
"""

import shutil

from django.conf import settings

from .base import DatabaseEngine, EngineUnavailable, ObjectEngine
from .minio import MinioEngine
from .mongo import MongodEngine, SecantusEngine
from .rclone import RcloneEngine

__all__ = [
    "DatabaseEngine",
    "EngineUnavailable",
    "ObjectEngine",
    "database_engine",
    "object_engine",
]


def database_engine() -> DatabaseEngine:
    choice = settings.DB_ENGINE
    if choice == "auto":
        choice = "mongod" if shutil.which("mongod") else "secantus"
    return MongodEngine() if choice == "mongod" else SecantusEngine()


def object_engine() -> ObjectEngine:
    choice = settings.S3_ENGINE
    if choice == "auto":
        choice = "minio" if shutil.which("minio") else "rclone"
    return MinioEngine() if choice == "minio" else RcloneEngine()
