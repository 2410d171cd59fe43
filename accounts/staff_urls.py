"""The staff console, under /staff/."""

from django.urls import path

from accounts import staff_views

app_name = "staff"

urlpatterns = [
    path("", staff_views.staff_index, name="index"),
    # Not "account_id": the account middleware would look for a membership staff never hold.
    path("accounts/<str:target_account>/", staff_views.staff_account, name="account"),
    path("accounts/<str:target_account>/support/", staff_views.staff_start_session, name="start_session"),
    path("support/end/", staff_views.end_session, name="end_session"),
]
