"""`manage.py runstack`: prepare the data dir and run the node stack.

Steps: create the data dir layout and the master secret, migrate the metadata
database, create or update the operator account, let each engine prepare
itself (the database engine's admin user), write the supervisord config, and
replace this process with supervisord in the foreground.
"""

import fcntl
import logging
import os
import shutil
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from corestore_project import derive
from corestore_project.engines import database_engine, object_engine
from corestore_project.engines.base import ensure_dir
from corestore_project.stack import process_specs, supervisord_config

logger = logging.getLogger("corestore.stack")

DATA_SUBDIRS = ("db", "s3", "volumes", "archive", "redis", "run", "log")


class Command(BaseCommand):
    help = "Prepare the data directory and run the whole node stack in the foreground."

    def add_arguments(self, parser):
        parser.add_argument(
            "--prepare-only",
            action="store_true",
            help="set up the data dir and engines, then exit without starting",
        )

    def handle(self, *args, **options):
        self._check_binaries()
        self._prepare_data_dir()
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        self._ensure_operator_account()

        database_engine().prepare()
        object_engine().prepare()
        self._after_prepare()

        specs = process_specs()
        config_path = settings.RUN_DIR / "supervisord.conf"
        config_path.write_text(supervisord_config(specs))
        os.chmod(config_path, 0o600)
        if options["prepare_only"]:
            return

        logger.info(
            "starting %s; logs in %s",
            ", ".join(spec.name for spec in specs),
            settings.LOG_DIR,
        )
        for spec in specs:
            os.environ.update(spec.environment)
        sys.stdout.flush()
        sys.stderr.flush()
        supervisord = shutil.which("supervisord", path=os.path.dirname(sys.executable))
        os.execv(supervisord, [supervisord, "-c", str(config_path)])

    def _check_binaries(self):
        if not shutil.which("redis-server"):
            raise CommandError(
                "redis-server is not installed (apt-get install redis-server)"
            )
        forced = {
            "CORESTORE_DB_ENGINE": (settings.DB_ENGINE, "mongod"),
            "CORESTORE_S3_ENGINE": (settings.S3_ENGINE, "minio"),
        }
        for name, (choice, binary) in forced.items():
            if choice == binary and not shutil.which(binary):
                raise CommandError(f"{name}={choice}, but {binary} is not on PATH")

    def _lock_data_dir(self):
        """Refuse to start twice on one data dir.

        A second start would delete the running stack's sockets and fail its
        jobs. The lock's descriptor survives the exec, so supervisord holds it
        for as long as the stack runs.
        """
        lock_path = settings.RUN_DIR / "stack.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CommandError(
                f"another corestore stack is running on {settings.DATA_DIR}"
            ) from None
        os.set_inheritable(fd, True)
        self._lock_fd = fd

    def _prepare_data_dir(self):
        ensure_dir(settings.DATA_DIR)
        for name in DATA_SUBDIRS:
            ensure_dir(settings.DATA_DIR / name)
        self._lock_data_dir()
        # Samples of the previous run's processes: counters restart from zero.
        shutil.rmtree(settings.METRICS_DIR, ignore_errors=True)
        ensure_dir(settings.METRICS_DIR)
        secret = derive.ensure_master_secret(
            settings.DATA_DIR, settings.MASTER_SECRET_ENV
        )
        # Settings were read before the secret existed on a fresh data dir.
        settings.MASTER_SECRET = secret
        os.environ.setdefault("CORESTORE_DATA_DIR", str(settings.DATA_DIR))
        stale_socket = settings.VOLUME_PLUGIN_SOCKET
        ensure_dir(stale_socket.parent, 0o755)
        for path in (stale_socket, settings.REDIS_SOCKET):
            path.unlink(missing_ok=True)

    def _ensure_operator_account(self):
        if not settings.ADMIN_PASSWORD:
            return
        from django.contrib.auth import get_user_model

        user, created = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(settings.ADMIN_PASSWORD)
        user.save()
        logger.info("operator account 'admin' %s", "created" if created else "updated")

    def _after_prepare(self):
        """Hook for apps that must tidy up before the processes start."""
        from django.apps import apps

        for config in apps.get_app_configs():
            hook = getattr(config, "before_stack_start", None)
            if hook:
                hook()
