"""The audience pages, under /a/<account_id>/: contacts/, lists/ and segments/ (each route names its section).

Fixed paths come before ``contacts/<contact_id>/``, which would otherwise take "new", "export" or "imports".
"""

from django.urls import path

from contacts import gdpr_views, import_views, views

app_name = "contacts"

urlpatterns = [
    path("contacts/", views.contact_index, name="contact_index"),
    path("contacts/new/", views.contact_create, name="contact_create"),
    path("contacts/export/", views.contact_export, name="contact_export"),
    # The CSV import wizard (contacts/import_views.py).
    path("contacts/imports/", import_views.import_index, name="import_index"),
    path("contacts/imports/upload/", import_views.import_upload, name="import_upload"),
    path("contacts/imports/<str:import_id>/", import_views.import_mapping, name="import_mapping"),
    path("contacts/imports/<str:import_id>/progress/", import_views.import_progress, name="import_progress"),
    path(
        "contacts/imports/<str:import_id>/progress/status/",
        import_views.import_progress_fragment,
        name="import_progress_fragment",
    ),
    path("contacts/imports/<str:import_id>/pause/", import_views.import_pause, name="import_pause"),
    path("contacts/imports/<str:import_id>/resume/", import_views.import_resume, name="import_resume"),
    path("contacts/imports/<str:import_id>/cancel/", import_views.import_cancel, name="import_cancel"),
    path("contacts/imports/<str:import_id>/errors.csv", import_views.import_error_report, name="import_error_report"),
    path("contacts/<str:contact_id>/", views.contact_detail, name="contact_detail"),
    path("contacts/<str:contact_id>/edit/", views.contact_edit, name="contact_edit"),
    path("contacts/<str:contact_id>/delete/", views.contact_delete, name="contact_delete"),
    # The person's rights and the suppression list (contacts/gdpr_views.py).
    path("contacts/<str:contact_id>/personal-data/", gdpr_views.contact_data_export, name="gdpr_export"),
    path("contacts/<str:contact_id>/erase/", gdpr_views.contact_erase, name="gdpr_erase"),
    path("suppressions/", gdpr_views.suppression_index, name="suppression_index"),
    path("suppressions/add/", gdpr_views.suppression_add, name="suppression_add"),
    path("suppressions/remove/", gdpr_views.suppression_remove, name="suppression_remove"),
    path("lists/", views.mailing_list_index, name="list_index"),
    path("lists/new/", views.mailing_list_create, name="list_create"),
    path("lists/<str:list_id>/", views.mailing_list_detail, name="list_detail"),
    path("lists/<str:list_id>/edit/", views.mailing_list_edit, name="list_edit"),
    path("lists/<str:list_id>/delete/", views.mailing_list_delete, name="list_delete"),
    path("segments/", views.segment_index, name="segment_index"),
    path("segments/new/", views.segment_create, name="segment_create"),
    path("segments/count/", views.segment_count, name="segment_count"),
    path("segments/<str:segment_id>/", views.segment_detail, name="segment_detail"),
    path("segments/<str:segment_id>/edit/", views.segment_edit, name="segment_edit"),
]
