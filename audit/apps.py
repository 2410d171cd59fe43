from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from audit.celery_context import connect_celery_signals

        # In the web process this tags the messages it publishes; in a worker, it binds them.
        connect_celery_signals()
