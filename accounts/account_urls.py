"""Account settings pages, under /a/<account_id>/settings/."""

from django.urls import path

from accounts import api_key_views

app_name = "account_settings"

urlpatterns = [
    path("api-keys/", api_key_views.api_key_index, name="api_keys"),
    path("api-keys/new/", api_key_views.api_key_create, name="api_key_create"),
    path("api-keys/<str:key_id>/revoke/", api_key_views.api_key_revoke, name="api_key_revoke"),
]
