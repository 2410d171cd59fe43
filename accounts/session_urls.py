from django.urls import path

from accounts import session_views

app_name = "sessions"

urlpatterns = [
    path("", session_views.session_index, name="index"),
    path("end-others/", session_views.session_revoke_others, name="revoke_others"),
    path("<str:session_id>/end/", session_views.session_revoke, name="revoke"),
]
