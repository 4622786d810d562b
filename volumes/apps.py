from django.apps import AppConfig


class VolumesConfig(AppConfig):
    name = "volumes"

    def before_stack_start(self):
        """Finish removals that a crash interrupted (see remove_volume)."""
        from volumes.driver import discard_leftover_trash

        discard_leftover_trash()
