"""The node stack: which processes run, and the supervisord config that runs them.

supervisord does the supervision (restart on crash, stop on SIGTERM/SIGINT,
one log file per process). Secrets never go into the generated config: the
processes inherit them from supervisord's environment.
"""

import logging
import shlex
import sys
from pathlib import Path

from django.conf import settings

from corestore_project.engines import database_engine, object_engine
from corestore_project.engines.base import ProcessSpec

LOG_ECHO = Path(__file__).with_name("logecho.py")

logger = logging.getLogger("corestore.stack")


def gunicorn_options() -> list[str]:
    """What both gunicorn servers share: log format and metrics files."""
    return [
        "--logger-class",
        "corestore_project.gunicorn_logger."
        + ("JsonLogger" if settings.LOG_FORMAT == "json" else "TextLogger"),
        # prometheus-client's multiprocess mode: see corestore_project/metrics.
        "--env",
        f"PROMETHEUS_MULTIPROC_DIR={settings.METRICS_DIR}",
    ]


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def process_specs() -> list[ProcessSpec]:
    run_dir = settings.RUN_DIR
    specs = [
        ProcessSpec(
            name="redis",
            # Unix socket only: workloads on the node's network cannot reach it.
            command=[
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                str(settings.REDIS_SOCKET),
                "--unixsocketperm",
                "700",
                "--dir",
                str(settings.DATA_DIR / "redis"),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            priority=10,
        ),
        *database_engine().processes(),
        *object_engine().processes(),
        ProcessSpec(
            name="worker",
            command=python_module(
                "celery",
                "-A",
                "corestore_project",
                # The start-up banner is not a log line; JSON logs leave it out.
                *(["--quiet"] if settings.LOG_FORMAT == "json" else []),
                "worker",
                "--loglevel",
                settings.LOG_LEVEL,
                "--hostname",
                "corestore@%h",
                "--concurrency",
                "2",
                "--task-events",
            ),
            # Root on purpose: restores give volume files back their owners.
            # Celery's multi-line warning about it would repeat at every start.
            environment={
                "PYTHONWARNINGS": "ignore:You're running the worker with superuser"
            },
            # Let a running job finish or fail cleanly before it is killed.
            stop_wait_seconds=60,
            priority=40,
        ),
        ProcessSpec(
            name="api",
            command=python_module(
                "gunicorn",
                "corestore_project.wsgi:application",
                "--bind",
                f"{settings.BIND_ADDRESS}:{settings.CONTROL_PORT}",
                "--worker-class",
                "gthread",
                "--workers",
                "2",
                "--threads",
                "8",
                # Snapshot and restore calls wait for their job by default.
                "--timeout",
                "3600",
                "--graceful-timeout",
                "20",
                "--no-control-socket",
                *gunicorn_options(),
            ),
            priority=60,
        ),
        ProcessSpec(
            name="volumeplugin",
            command=python_module(
                "gunicorn",
                "corestore_project.plugin_wsgi:application",
                "--bind",
                f"unix:{settings.VOLUME_PLUGIN_SOCKET}",
                "--worker-class",
                "gthread",
                "--workers",
                "1",
                "--threads",
                "16",
                "--timeout",
                "120",
                # The socket is created under this umask: only root (dockerd)
                # may call the plugin, not every local user.
                "--umask",
                "0o077",
                "--no-control-socket",
                *gunicorn_options(),
            ),
            priority=60,
        ),
    ]
    if settings.FLOWER_AUTH_SECRET:
        specs.append(
            ProcessSpec(
                name="flower",
                command=python_module(
                    "celery",
                    "-A",
                    "corestore_project",
                    "flower",
                    f"--address={settings.BIND_ADDRESS}",
                    f"--port={settings.FLOWER_PORT}",
                    f"--db={run_dir / 'flower.db'}",
                    "--persistent=False",
                ),
                # Flower reads FLOWER_BASIC_AUTH from its environment, which
                # supervisord passes on: the credentials stay out of `ps` and
                # of the generated config.
                environment={"FLOWER_BASIC_AUTH": settings.FLOWER_AUTH_SECRET},
            )
        )
    else:
        logger.info("flower is off: CORESTORE_FLOWER_BASIC_AUTH is not set")
    return specs


def _program(spec: ProcessSpec, log_dir: Path) -> str:
    command = " ".join(shlex.quote(part) for part in spec.command)
    return "\n".join(
        [
            f"[program:{spec.name}]",
            f"command={command.replace('%', '%%')}",
            "autostart=true",
            "autorestart=true",
            "startsecs=2",
            "startretries=20",
            f"priority={spec.priority}",
            f"stopsignal={spec.stop_signal}",
            f"stopwaitsecs={spec.stop_wait_seconds}",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={log_dir / (spec.name + '.log')}",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=5",
            "stdout_events_enabled=true",
            "",
        ]
    )


def supervisord_config(specs: list[ProcessSpec]) -> str:
    run_dir, log_dir = settings.RUN_DIR, settings.LOG_DIR
    header = f"""\
[supervisord]
nodaemon=true
logfile={log_dir / "supervisord.log"}
logfile_maxbytes=20MB
pidfile={run_dir / "supervisord.pid"}
childlogdir={log_dir}
loglevel=info

[unix_http_server]
file={run_dir / "supervisor.sock"}
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{run_dir / "supervisor.sock"}

[eventlistener:logecho]
command={shlex.quote(sys.executable)} {shlex.quote(str(LOG_ECHO))}
events=PROCESS_LOG
buffer_size=1000
stdout_logfile=NONE
stderr_logfile=/dev/stdout
stderr_logfile_maxbytes=0
autorestart=true

"""
    return header + "\n".join(_program(spec, log_dir) for spec in specs)


def supervisor_proxy():
    """An XML-RPC client on supervisord's unix socket, for /health."""
    from xmlrpc.client import ServerProxy

    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(
        None, None, f"unix://{settings.RUN_DIR / 'supervisor.sock'}"
    )
    return ServerProxy("http://127.0.0.1", transport=transport)
