from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in, user_logged_out

        from accounts.reauth import record_login_as_verification
        from accounts.sessions import end_session, start_session

        user_logged_in.connect(record_login_as_verification, dispatch_uid="bluespark-login-verifies")
        user_logged_in.connect(start_session, dispatch_uid="bluespark-session-start")
        user_logged_out.connect(end_session, dispatch_uid="bluespark-session-end")
