from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "security"
    verbose_name = "Security"

    def ready(self) -> None:
        # Fail at start-up, not at the first encrypted read, on a missing,
        # malformed or foreign (another environment's) keyring.
        from security.keyring import get_keyring

        get_keyring()
