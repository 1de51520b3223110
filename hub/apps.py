from django.apps import AppConfig


class HubConfig(AppConfig):
    name = "hub"

    def ready(self) -> None:
        from accounts import webhooks
        from hub import audit  # noqa: F401 - connects the sign-in audit log
        from hub.webhooks import dispatch

        # events written (on their transaction's commit): sent at once
        webhooks.events_added.connect(dispatch.kick, dispatch_uid="hub-webhooks-kick")
