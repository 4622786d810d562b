import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class SnapshotsConfig(AppConfig):
    name = "snapshots"

    def before_stack_start(self):
        """Tidy up after the last run, before any worker or API process starts.

        Steps: fail the jobs it left unfinished (nothing can be running them
        now), remove its staging folders, initialise the archive on first
        start and remove the locks that killed restic runs left in it.
        """
        from snapshots import archive, common, jobs

        jobs.fail_interrupted_at_start()
        common.clean_staging_at_start()
        state = archive.prepare_at_start()
        logger.info("archive %s (passphrase: %s)", state["status"], state["passphrase"])
