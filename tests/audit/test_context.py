"""The audit context: bound for a whole request, carried by the tasks it queues, empty anywhere else."""

from __future__ import annotations

import subprocess

import pytest
from celery.result import AsyncResult
from django.contrib.auth.signals import user_logged_in
from django.test import Client, RequestFactory, SimpleTestCase, override_settings
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiScope, Role
from accounts.tenancy import account_scope
from audit.celery_context import CONTEXT_HEADER
from audit.context import EMPTY, AuditContext, bound_context, bound_request, current_context
from tests.bluespark.test_celery_worker import worker  # noqa: F401 - the real-worker fixture
from tests.cast import PASSWORD, CastTestCase, make_account, make_user
from tests.support import probe_tasks

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
TEST_URLS = "tests.support.urls"

TASK_CONTEXT = AuditContext(request_id="req_from_the_message_0001", user_id="usr_task", account_id="acc_task")
CALLER_CONTEXT = AuditContext(request_id="req_of_the_caller_000001", user_id="usr_caller", account_id="acc_caller")


@override_settings(ROOT_URLCONF=TEST_URLS)
class RequestContextTests(CastTestCase):
    def test_a_dashboard_request_names_the_user_the_account_and_the_request_id_it_answers_with(self) -> None:
        self.client.force_login(self.alice, backend=MODEL_BACKEND)

        response = self.client.get(f"/a/{self.acme.public_id}/test-context/")

        assert response.status_code == 200
        assert response.json() == {
            "request_id": response["X-Request-ID"],
            "ip": "127.0.0.1",
            "user_id": self.alice.public_id,
            "account_id": self.acme.public_id,
        }

    def test_each_request_is_its_own_context_and_none_outlives_it(self) -> None:
        self.client.force_login(self.alice, backend=MODEL_BACKEND)
        first = self.client.get(f"/a/{self.acme.public_id}/test-context/")
        assert current_context() == EMPTY

        self.client.force_login(self.charlie, backend=MODEL_BACKEND)
        second = self.client.get(f"/a/{self.globex.public_id}/test-context/")

        assert first.json()["request_id"] != second.json()["request_id"]
        assert (second.json()["user_id"], second.json()["account_id"]) == (
            self.charlie.public_id,
            self.globex.public_id,
        )
        assert current_context() == EMPTY

    def test_outside_an_account_a_request_names_the_user_and_no_account(self) -> None:
        self.client.force_login(self.bob, backend=MODEL_BACKEND)

        response = self.client.get("/test-context/")

        assert response.json() == {
            "request_id": response["X-Request-ID"],
            "ip": "127.0.0.1",
            "user_id": self.bob.public_id,
        }

    def test_an_anonymous_request_names_only_itself_and_its_address(self) -> None:
        response = self.client.get("/test-context/", REMOTE_ADDR="198.51.100.23")

        assert response.json() == {"request_id": response["X-Request-ID"], "ip": "198.51.100.23"}

    def test_an_api_request_names_its_key_and_the_keys_account_and_no_user(self) -> None:
        with account_scope(self.acme):
            issued = services.create_api_key(
                self.acme, name="context probe", scopes=[ApiScope.CAMPAIGNS_READ], created_by=self.alice
            )

        response = APIClient().get("/test-api/context/", HTTP_AUTHORIZATION=f"Bearer {issued.token}")

        assert response.status_code == 200
        assert response.json() == {
            "request_id": response["X-Request-ID"],
            "ip": "127.0.0.1",
            "api_key_id": issued.key.public_id,
            "account_id": self.acme.public_id,
        }

    def test_a_signal_receiver_sees_the_request_that_sent_the_signal(self) -> None:
        seen: list[AuditContext] = []

        def remember_context(**_: object) -> None:
            seen.append(current_context())

        user_logged_in.connect(remember_context)
        self.addCleanup(user_logged_in.disconnect, remember_context)

        response = Client().post("/accounts/login/", {"username": "alice@acme.test", "password": PASSWORD})

        assert response.status_code == 302
        assert seen == [AuditContext(request_id=response["X-Request-ID"], ip="127.0.0.1", user_id=self.alice.public_id)]


class BoundContextTests(SimpleTestCase):
    def test_outside_a_request_or_task_the_context_is_empty(self) -> None:
        assert current_context() == EMPTY
        assert current_context().as_headers() == {}

    def test_bound_contexts_nest_and_each_ends_with_its_block(self) -> None:
        with bound_context(CALLER_CONTEXT):
            assert current_context() == CALLER_CONTEXT
            with bound_context(TASK_CONTEXT):
                assert current_context() == TASK_CONTEXT
            assert current_context() == CALLER_CONTEXT
        assert current_context() == EMPTY

    def test_a_bound_context_ends_when_its_block_raises(self) -> None:
        with bound_context(CALLER_CONTEXT):
            with pytest.raises(RuntimeError):
                with bound_context(TASK_CONTEXT):
                    raise RuntimeError("inside")
            assert current_context() == CALLER_CONTEXT
        assert current_context() == EMPTY

    def test_a_bound_context_stands_in_for_the_request_until_it_ends(self) -> None:
        request = RequestFactory().get("/")
        request.request_id = "req_of_the_request_00001"
        with bound_request(request):
            assert current_context() == AuditContext(request_id="req_of_the_request_00001")
            with bound_context(TASK_CONTEXT):
                assert current_context() == TASK_CONTEXT
            assert current_context().request_id == "req_of_the_request_00001"
        assert current_context() == EMPTY


class InProcessTaskContextTests(SimpleTestCase):
    """Celery's own tracing (``Task.apply``) sends the same prerun and postrun signals as a worker."""

    def test_a_task_run_in_process_runs_in_its_callers_context(self) -> None:
        with bound_context(CALLER_CONTEXT):
            result = probe_tasks.report_context.apply(args=["in process"], throw=True)

        assert result.get()["context"] == CALLER_CONTEXT.as_headers()
        assert current_context() == EMPTY

    def test_a_task_runs_in_the_context_its_message_carries_and_leaves_it_when_done(self) -> None:
        with bound_context(CALLER_CONTEXT):
            result = probe_tasks.report_context.apply(
                args=["carried"], headers={CONTEXT_HEADER: TASK_CONTEXT.as_headers()}, throw=True
            )
            assert current_context() == CALLER_CONTEXT

        assert result.get()["context"] == TASK_CONTEXT.as_headers()

    def test_a_task_that_raises_still_leaves_its_context(self) -> None:
        with bound_context(CALLER_CONTEXT):
            result = probe_tasks.fail_in_context.apply(
                args=["probe"], headers={CONTEXT_HEADER: TASK_CONTEXT.as_headers()}, throw=False
            )
            assert current_context() == CALLER_CONTEXT

        assert result.failed()
        assert TASK_CONTEXT.request_id in str(result.result)
        assert current_context() == EMPTY

    def test_a_message_with_a_malformed_context_header_runs_with_an_empty_context(self) -> None:
        with bound_context(CALLER_CONTEXT):
            result = probe_tasks.report_context.apply(
                args=["malformed"], headers={CONTEXT_HEADER: "usr_forged"}, throw=True
            )

        assert result.get()["context"] == {}


# --- a real worker process ------------------------------------------------------------------


def wait_for(result: AsyncResult, worker_process: subprocess.Popen, *, propagate: bool = True) -> object:
    try:
        return result.get(timeout=90, propagate=propagate)
    except Exception:  # noqa: BLE001 - whatever failed, show the worker output
        worker_process.terminate()
        output = worker_process.communicate(timeout=30)[0]
        pytest.fail(f"the worker did not answer; its output:\n{output}")


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_task_queued_by_a_request_runs_in_the_worker_as_that_request(worker, settings) -> None:  # noqa: F811
    settings.ROOT_URLCONF = TEST_URLS
    alice = make_user("alice@acme.test", full_name="Alice Owner")
    acme = make_account("Acme", {alice: Role.OWNER})
    client = Client()
    client.force_login(alice, backend=MODEL_BACKEND)

    response = client.post(f"/a/{acme.public_id}/test-context/task/")
    assert response.status_code == 200
    reported = wait_for(AsyncResult(response.json()["task_id"]), worker)

    expected = {
        "request_id": response["X-Request-ID"],
        "ip": "127.0.0.1",
        "user_id": alice.public_id,
        "account_id": acme.public_id,
    }
    assert reported == {"label": "from a request", "context": expected, "carried": expected}


@pytest.mark.worker
@pytest.mark.slow
def test_a_worker_runs_each_task_in_its_own_context_and_none_leaks_to_the_next(worker) -> None:  # noqa: F811
    with bound_context(CALLER_CONTEXT):
        first = probe_tasks.report_context.delay("first")
    assert wait_for(first, worker) == {
        "label": "first",
        "context": CALLER_CONTEXT.as_headers(),
        "carried": CALLER_CONTEXT.as_headers(),
    }

    with bound_context(TASK_CONTEXT):
        failing = probe_tasks.fail_in_context.delay("failing")
    wait_for(failing, worker, propagate=False)
    assert failing.failed()
    assert TASK_CONTEXT.request_id in str(failing.result)

    last = probe_tasks.report_context.delay("without a context")
    assert wait_for(last, worker) == {"label": "without a context", "context": {}, "carried": {}}
