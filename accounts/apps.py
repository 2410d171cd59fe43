from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from accounts.reauth import record_login_as_verification

        user_logged_in.connect(record_login_as_verification, dispatch_uid="bluespark-login-verifies")
