"""A real Celery worker process against the real Redis broker."""

import pytest

from accounts.models import Account
from accounts.tenancy import account_scope
from bluespark.celery import app
from campaigns.services import create_campaign
from tests.support import probe_tasks
from tests.support.worker import celery_worker


def test_celery_accepts_only_json_and_acknowledges_late():
    assert app.conf.task_serializer == "json"
    assert app.conf.result_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert {queue.name for queue in app.conf.task_queues} == {"default", "bulk"}
    assert app.conf.task_default_queue == "default"


def test_a_task_with_a_non_json_argument_is_refused_before_it_is_sent():
    from kombu.exceptions import EncodeError

    with pytest.raises(EncodeError):
        probe_tasks.describe_scope.apply_async(args=["acc_x", object()])


@pytest.fixture
def worker():
    with celery_worker(include=["tests.support.probe_tasks"]) as process:
        yield process


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_tenant_tasks_from_both_queues(worker):
    acme = Account.objects.create(name="Acme")
    globex = Account.objects.create(name="Globex")
    with account_scope(acme):
        campaign = create_campaign(acme, name="Worker-visible")
    with account_scope(globex):
        create_campaign(globex, name="Not for Acme")

    default_result = probe_tasks.describe_scope.apply_async(args=[acme.public_id, "default"])
    bulk_result = probe_tasks.describe_scope.apply_async(args=[acme.public_id, "bulk"], queue="bulk")
    try:
        from_default = default_result.get(timeout=90)
        from_bulk = bulk_result.get(timeout=90)
    except Exception:  # noqa: BLE001 - whatever failed, show the worker output
        worker.terminate()
        output = worker.communicate(timeout=30)[0]
        pytest.fail(f"the worker did not answer; its output:\n{output}")

    expected = {"account": acme.public_id, "active_account": acme.public_id, "campaigns": [campaign.public_id]}
    assert from_default == {"label": "default", **expected}
    assert from_bulk == {"label": "bulk", **expected}


def test_heavy_tasks_are_routed_to_the_bulk_queue():
    from accounts.tasks import reseal_account_data

    assert app.amqp.router.route({}, reseal_account_data.name)["queue"].name == "bulk"
    assert app.amqp.router.route({}, probe_tasks.describe_scope.name)["queue"].name == "default"
