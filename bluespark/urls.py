from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts import reauth
from audit import api as audit_api
from bluespark import views
from campaigns import api as campaigns_api
from contacts import api as contacts_api

dashboard_patterns = [
    path("", views.dashboard, name="dashboard"),
    # contacts/, lists/ and segments/: the audience app names its own sections.
    path("", include("contacts.urls")),
    path("campaigns/", include("campaigns.urls")),
    path("settings/", include("accounts.account_urls")),
    path("audit/", include("audit.urls")),
]

api_v1_patterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("campaigns/", campaigns_api.CampaignListAPI.as_view(), name="api-campaign-list"),
    path("campaigns/<str:public_id>/", campaigns_api.CampaignDetailAPI.as_view(), name="api-campaign-detail"),
    path("audit-events/", audit_api.AuditEventListAPI.as_view(), name="api-audit-event-list"),
    path("contacts/", contacts_api.ContactListAPI.as_view(), name="api-contact-list"),
    # Before contacts/<public_id>/, which would otherwise take "upsert" and "bulk" for ids.
    path("contacts/upsert/", contacts_api.ContactUpsertAPI.as_view(), name="api-contact-upsert"),
    path("contacts/bulk/", contacts_api.ContactBulkAPI.as_view(), name="api-contact-bulk"),
    path("contacts/<str:public_id>/", contacts_api.ContactDetailAPI.as_view(), name="api-contact-detail"),
    path(
        "contacts/<str:public_id>/subscriptions/",
        contacts_api.ContactSubscriptionListAPI.as_view(),
        name="api-contact-subscription-list",
    ),
    path(
        "contacts/<str:public_id>/subscriptions/<str:list_id>/",
        contacts_api.ContactSubscriptionDetailAPI.as_view(),
        name="api-contact-subscription-detail",
    ),
    path("lists/", contacts_api.MailingListListAPI.as_view(), name="api-list-list"),
    path("lists/<str:public_id>/", contacts_api.MailingListDetailAPI.as_view(), name="api-list-detail"),
    path("segments/", contacts_api.SegmentListAPI.as_view(), name="api-segment-list"),
    path("segments/<str:public_id>/", contacts_api.SegmentDetailAPI.as_view(), name="api-segment-detail"),
    path("segments/<str:public_id>/count/", contacts_api.SegmentCountAPI.as_view(), name="api-segment-count"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="accounts:home", permanent=False)),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("accounts/verify/", reauth.reauthenticate, name="reauthenticate"),
    path("accounts/sessions/", include("accounts.session_urls")),
    path("accounts/invitations/", include("accounts.invitation_urls")),
    path("accounts/2fa/", include("accounts.two_factor_urls")),
    path("accounts/", include("accounts.urls")),
    path("staff/", include("accounts.staff_urls")),
    # Public subscribe forms, confirmation and unsubscribe links (no login): contacts/public_views.py.
    path("f/", include("contacts.public_urls")),
    # The middleware resolves <account_id> after a membership check and scopes the request.
    path("a/<str:account_id>/", include(dashboard_patterns)),
    path("api/v1/", include(api_v1_patterns)),
    path(
        "api/docs/",
        # Our template: drf-spectacular's, with its inline style in a file (the CSP allows no inline style).
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="bluespark/api_docs.html"),
        name="api-docs",
    ),
]
