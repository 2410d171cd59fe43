"""Public pages under /f/: subscribe forms, confirmation and unsubscribe links (no login).

Tokens are named ``token`` so the access log redacts them (audit.middleware.SECRET_URL_KWARGS).
"""

from django.urls import path

from contacts import public_views

app_name = "subscribe"

urlpatterns = [
    path("confirm/<str:token>/", public_views.confirm, name="confirm"),
    path("unsubscribe/<str:token>/", public_views.unsubscribe, name="unsubscribe"),
    path("<str:list_id>/", public_views.subscribe_form, name="form"),
]
