from django.apps import AppConfig


class SyncsConfig(AppConfig):
    """The flows that move data between the systems, the connectors they speak through, and their tasks."""

    name = "syncs"
    verbose_name = "Syncs"

    def ready(self) -> None:
        import syncs.flows  # noqa: F401 - registers every flow's retry handler with the exception queue
