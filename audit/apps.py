from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "audit"
    verbose_name = "Audit"

    def ready(self) -> None:
        from audit.celery_context import connect_celery_signals
        from audit.tasks import queue_decryption_failure_event
        from security.fields import decryption_failed

        # In the web process this tags the messages it publishes; in a worker, it binds them.
        connect_celery_signals()
        decryption_failed.connect(queue_decryption_failure_event, dispatch_uid="audit.decryption_failed")
