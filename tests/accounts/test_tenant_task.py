import pytest

from accounts.tenancy import get_active_account
from tests.cast import CastTestCase
from tests.support import probe_tasks


class TenantTaskTests(CastTestCase):
    def test_the_task_runs_inside_the_named_accounts_scope(self):
        result = probe_tasks.describe_scope.apply(args=[self.acme.public_id, "in-process"]).get()
        assert result == {
            "label": "in-process",
            "account": self.acme.public_id,
            "active_account": self.acme.public_id,
            "campaigns": [self.acme_campaign.public_id],
        }
        assert get_active_account() is None

    def test_a_bound_task_gets_itself_then_the_account(self):
        result = probe_tasks.describe_bound_task.apply(args=[self.globex.public_id]).get()
        assert result == {"task": "tests.support.probe_tasks.describe_bound_task", "account": self.globex.public_id}

    def test_the_scope_is_left_when_the_task_raises(self):
        with pytest.raises(RuntimeError, match="failed inside"):
            probe_tasks.fail_in_scope.apply(args=[self.acme.public_id], throw=True)
        assert get_active_account() is None

    def test_a_task_for_a_deleted_account_does_nothing(self):
        account_id = self.globex.public_id
        self.globex.delete()
        assert probe_tasks.describe_scope.apply(args=[account_id, "gone"]).get() is None

    def test_task_names_are_stable_module_paths(self):
        assert probe_tasks.describe_scope.name == "tests.support.probe_tasks.describe_scope"
