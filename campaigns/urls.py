from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("", views.campaign_index, name="index"),
    path("new/", views.campaign_create, name="create"),
    path("<str:campaign_id>/", views.campaign_detail, name="detail"),
    path("<str:campaign_id>/edit/", views.campaign_edit, name="edit"),
]
