"""Two-factor authentication, under /accounts/2fa/."""

from django.urls import path

from accounts import two_factor_views

app_name = "two_factor"

urlpatterns = [
    path("", two_factor_views.index, name="index"),
    path("setup/", two_factor_views.setup, name="setup"),
    path("setup/confirm/", two_factor_views.confirm, name="confirm"),
    path("recovery-codes/", two_factor_views.regenerate_recovery_codes, name="recovery_codes"),
    path("disable/", two_factor_views.disable, name="disable"),
    path("verify/", two_factor_views.verify, name="verify"),
]
