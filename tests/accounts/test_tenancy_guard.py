from pathlib import Path

from django.apps import apps
from django.conf import settings

from accounts.tenancy import TenantModel
from tests.support.tenancy_guard import find_unscoped_queries, guarded_files, scan_project

ROOT = Path(settings.BASE_DIR)
PROJECT_APPS = ["bluespark", "accounts", "audit", "security", "contacts", "campaigns", "delivery"]


def tenant_model_names() -> set[str]:
    return {model.__name__ for model in apps.get_models() if issubclass(model, TenantModel)}


def test_the_project_has_tenant_models_to_guard():
    assert {"Campaign", "MailingList"} <= tenant_model_names()


def test_views_api_and_tasks_reach_tenant_rows_only_through_selectors():
    guarded = guarded_files(ROOT, PROJECT_APPS)
    # Feature modules are read too, not only the files named views.py.
    assert {ROOT / "accounts" / "views.py", ROOT / "accounts" / "team_views.py", ROOT / "campaigns" / "api.py"} <= set(
        guarded
    )
    violations = scan_project(ROOT, PROJECT_APPS, tenant_model_names())
    assert not violations, "\n".join(map(str, violations))


def test_it_reports_a_view_that_queries_a_tenant_model_directly():
    source = (
        "from campaigns.models import Campaign\n"
        "def detail(request, campaign_id):\n"
        "    return Campaign.objects.get(public_id=campaign_id)\n"
    )
    violations = find_unscoped_queries(source, {"Campaign"})
    assert [(v.line, "Campaign.objects" in v.message) for v in violations] == [(3, True)]


def test_it_reports_the_escape_hatch_shortcuts_and_raw_sql():
    source = (
        "from django.db import connection\n"
        "from django.shortcuts import get_object_or_404\n"
        "def view(request, pk):\n"
        "    a = Anything.objects_unscoped_dangerous.all()\n"
        "    b = get_object_or_404(MailingList, pk=pk)\n"
        "    c = Campaign._base_manager.all()\n"
        "    d = SomeModel.objects.raw('select 1')\n"
        "    with connection.cursor() as cursor:\n"
        "        pass\n"
    )
    lines = sorted(v.line for v in find_unscoped_queries(source, {"Campaign", "MailingList"}))
    assert lines == [4, 5, 6, 7, 8]


def test_it_allows_selectors_and_non_tenant_models():
    source = (
        "from campaigns.selectors import access_campaign\n"
        "def view(request, campaign_id):\n"
        "    campaign = access_campaign(request.account, campaign_id)\n"
        "    statuses = Campaign.Status.values\n"
        "    return User.objects.filter(pk=1)\n"
    )
    assert find_unscoped_queries(source, {"Campaign"}) == []
