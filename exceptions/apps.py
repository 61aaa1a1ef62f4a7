from django.apps import AppConfig


class ExceptionsConfig(AppConfig):
    """The exception queue: every failed item a person must see, own, retry or resolve."""

    name = "exceptions"
    verbose_name = "Exceptions"

    def ready(self) -> None:
        from exceptions import mapping_changes

        mapping_changes.connect()
