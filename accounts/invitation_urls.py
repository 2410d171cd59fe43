from django.urls import path

from accounts import team_views

app_name = "invitations"

urlpatterns = [
    path("<str:token>/", team_views.accept_invitation, name="accept"),
]
