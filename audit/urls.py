"""The audit trail pages, under /a/<account_id>/audit/."""

from django.urls import path

from audit import views

app_name = "audit"

urlpatterns = [
    path("", views.audit_index, name="index"),
    path("export/", views.audit_export, name="export"),
]
