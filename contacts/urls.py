from django.urls import path

from contacts import views

app_name = "contacts"

urlpatterns = [
    path("", views.mailing_list_index, name="list_index"),
    path("new/", views.mailing_list_create, name="list_create"),
    path("<str:list_id>/", views.mailing_list_detail, name="list_detail"),
]
