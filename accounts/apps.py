from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from axes.signals import user_locked_out
        from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed

        from accounts import lockout
        from accounts.reauth import record_login_as_verification
        from accounts.sessions import end_session, start_session

        user_logged_in.connect(record_login_as_verification, dispatch_uid="bluespark-login-verifies")
        user_logged_in.connect(start_session, dispatch_uid="bluespark-session-start")
        user_logged_out.connect(end_session, dispatch_uid="bluespark-session-end")
        user_locked_out.connect(lockout.record_lockout, dispatch_uid="bluespark-lockout-started")
        user_login_failed.connect(lockout.note_login_failed, dispatch_uid="bluespark-lockout-ended-failed")
        # auth.login and auth.logout are recorded by start_session and end_session, with the session's row.
        user_login_failed.connect(lockout.record_login_failed, dispatch_uid="bluespark-audit-login-failed")
        user_logged_in.connect(lockout.note_logged_in, dispatch_uid="bluespark-lockout-ended-login")
