"""Account settings pages, under /a/<account_id>/settings/."""

from django.urls import path

from accounts import account_views, api_key_views, support_views, team_views, two_factor_views

app_name = "account_settings"

urlpatterns = [
    path("", account_views.account_general, name="general"),
    path("delete/", account_views.account_delete, name="delete"),
    path("api-keys/", api_key_views.api_key_index, name="api_keys"),
    path("api-keys/new/", api_key_views.api_key_create, name="api_key_create"),
    path("api-keys/<str:key_id>/revoke/", api_key_views.api_key_revoke, name="api_key_revoke"),
    path("team/", team_views.team_index, name="team"),
    path("team/invite/", team_views.team_invite, name="team_invite"),
    path("team/invitations/<str:invitation_id>/withdraw/", team_views.team_withdraw_invitation, name="team_withdraw"),
    path("team/<str:user_id>/role/", team_views.team_change_role, name="team_role"),
    path("team/<str:user_id>/remove/", team_views.team_remove, name="team_remove"),
    path("security/", two_factor_views.account_security, name="security"),
    path("support/", support_views.support_index, name="support"),
    path("support/grant/", support_views.support_grant, name="support_grant"),
    path("support/<str:grant_id>/withdraw/", support_views.support_withdraw, name="support_withdraw"),
]
