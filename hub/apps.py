from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"

    def ready(self) -> None:
        from hub import audit  # noqa: F401 - connects the sign-in audit log
