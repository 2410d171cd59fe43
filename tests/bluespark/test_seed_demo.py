import io
import re
import stat

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Account, Membership, Role, User
from accounts.tenancy import account_scope
from campaigns.selectors import campaign_list
from contacts.selectors import mailing_list_list

LOGIN_LINE = re.compile(r"^Demo login: (?P<email>\S+) with password (?P<password>\S+) \(account acc_\w+\)$", re.M)


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    return settings.VAR_DIR


def seed() -> dict[str, str]:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    match = LOGIN_LINE.search(out.getvalue())
    assert match, out.getvalue()
    return match.groupdict()


@pytest.mark.django_db
def test_it_creates_the_demo_user_account_list_and_campaign(var_dir, settings):
    login = seed()

    user = User.objects.with_email(settings.DEMO_USER_EMAIL).get()
    assert login["email"] == settings.DEMO_USER_EMAIL
    assert user.is_active
    account = Account.objects.get(name="Demo Company")
    assert Membership.objects.get(account=account, user=user).role == Role.OWNER
    with account_scope(account):
        assert mailing_list_list(account).count() == 1
        assert campaign_list(account).count() == 1


@pytest.mark.django_db
def test_the_printed_password_is_the_users_and_is_kept_private(var_dir, settings):
    login = seed()

    user = User.objects.with_email(settings.DEMO_USER_EMAIL).get()
    assert user.check_password(login["password"])
    password_file = var_dir / "demo_password"
    assert password_file.read_text().strip() == login["password"]
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert len(login["password"]) >= 20


@pytest.mark.django_db
def test_running_it_twice_changes_nothing(var_dir, settings):
    first = seed()
    second = seed()

    assert second == first
    assert Account.objects.filter(name="Demo Company").count() == 1
    assert User.objects.with_email(settings.DEMO_USER_EMAIL).count() == 1
    account = Account.objects.get(name="Demo Company")
    with account_scope(account):
        assert mailing_list_list(account).count() == 1
        assert campaign_list(account).count() == 1


@pytest.mark.django_db
def test_it_restores_the_stored_password_and_reactivates_the_user(var_dir, settings):
    login = seed()
    user = User.objects.with_email(settings.DEMO_USER_EMAIL).get()
    user.set_password("someone changed it 1234")
    user.is_active = False
    user.save(update_fields=["password", "is_active"])

    seed()

    user.refresh_from_db()
    assert user.is_active
    assert user.check_password(login["password"])


@pytest.mark.django_db
def test_a_new_var_dir_gets_a_new_password_that_works(var_dir, settings, tmp_path):
    first = seed()
    settings.VAR_DIR = tmp_path / "elsewhere"

    second = seed()

    assert second["password"] != first["password"]
    assert User.objects.with_email(settings.DEMO_USER_EMAIL).get().check_password(second["password"])
    assert Account.objects.filter(name="Demo Company").count() == 1


@pytest.mark.django_db
def test_it_refuses_to_run_in_production(var_dir, settings):
    settings.IS_PROD = True

    with pytest.raises(CommandError, match="never runs in production"):
        call_command("seed_demo", stdout=io.StringIO())

    assert not User.objects.with_email(settings.DEMO_USER_EMAIL).exists()
    assert not (var_dir / "demo_password").exists()
