"""Carry the audit context from whoever queues a Celery task to the task while it runs.

At publication the current context (``AuditContext.as_headers()``: public ids,
a request id, an address) goes into one message header, never anything from
the task's arguments. The worker binds it for the task's run and unbinds it
afterwards, whether the task returned or raised, so nothing carries over to
the next task the same worker process runs. A task queued outside any request
or task (by beat, say) carries an empty context; a message without the header
or with a malformed one runs with an empty context too.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from celery import Task
from celery.signals import before_task_publish, task_postrun, task_prerun

from audit.context import AuditContext, bound_context, current_context

CONTEXT_HEADER = "bluespark_context"

# Keyed by task id: prerun and postrun are two calls, and an eager task can run inside another.
_bound: dict[str, ExitStack] = {}


def put_context_in_headers(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers[CONTEXT_HEADER] = current_context().as_headers()


def context_of_task(task: Task) -> AuditContext:
    """The context the task's message carries (empty if none, or malformed).

    A task run in-process (``apply()``, which publishes no message) runs in
    its caller's context unless it was given the header.
    """
    request = task.request
    carried = (request.headers or {}).get(CONTEXT_HEADER, request.get(CONTEXT_HEADER))
    if carried is None and request.is_eager:
        return current_context()
    if isinstance(carried, dict):
        return AuditContext.from_headers(carried)
    return AuditContext()


def bind_task_context(task_id: str, task: Task, **_: Any) -> None:
    stack = ExitStack()
    stack.enter_context(bound_context(context_of_task(task)))
    _bound[task_id] = stack


def unbind_task_context(task_id: str, **_: Any) -> None:
    stack = _bound.pop(task_id, None)
    if stack is not None:
        stack.close()


def connect_celery_signals() -> None:
    before_task_publish.connect(put_context_in_headers, weak=False, dispatch_uid="bluespark_audit_publish")
    task_prerun.connect(bind_task_context, weak=False, dispatch_uid="bluespark_audit_prerun")
    task_postrun.connect(unbind_task_context, weak=False, dispatch_uid="bluespark_audit_postrun")
