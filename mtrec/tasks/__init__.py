"""The task registry: one file per task, each class owning labels, head, loss and metrics.

A task class declares its ``name``, ``kind`` (``retrieval`` or ``pointwise``), main metric,
the behaviours it needs and its requirements (timestamps, protocols); the rest of mtrec
(model, run, evaluation, report, serving) reads those facts from here.  Adding a task is its
file plus one entry in :data:`REGISTRY`.
"""

from __future__ import annotations

from mtrec.tasks.base import PointwiseTask, Task, TaskDims, TaskError, TaskOptions
from mtrec.tasks.binary import BINARY_TASKS
from mtrec.tasks.engagement import EngagementTask
from mtrec.tasks.next_item import NextItemTask
from mtrec.tasks.rating import RatingTask

REGISTRY: dict[str, type[Task]] = {
    cls.name: cls for cls in (NextItemTask, *BINARY_TASKS, RatingTask, EngagementTask)}
TASKS = tuple(REGISTRY)


def task_class(name: str) -> type[Task]:
    if name not in REGISTRY:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return REGISTRY[name]


def main_metric(task: str) -> str:
    """The validation metric that stands for ``task``, from its class.

    >>> main_metric("next_item"), main_metric("purchase"), main_metric("rating")
    ('next_item/ndcg@10', 'purchase/auc', 'rating/rmse')
    """
    return f"{task}/{task_class(task).main_metric}"


def companion_metric(task: str) -> str:
    """The metric a report plots beside the main one.

    >>> companion_metric("next_item"), companion_metric("click")
    ('next_item/recall@10', 'click/gauc')
    """
    return f"{task}/{task_class(task).companion_metric}"


def check_task_names(names: tuple[str, ...]) -> None:
    if not names:
        raise TaskError(f"no task given; known tasks: {', '.join(TASKS)}")
    for name in names:
        task_class(name)
    if len(set(names)) != len(names):
        raise TaskError(f"a task is listed twice: {', '.join(names)}")


def build_tasks(names: tuple[str, ...], options: TaskOptions,
                dims: TaskDims) -> dict[str, Task]:
    """The tasks by name: retrieval tasks first, then the others in the order given."""
    check_task_names(names)
    ordered = sorted(names, key=lambda n: REGISTRY[n].kind != "retrieval")
    return {name: REGISTRY[name](options, dims) for name in ordered}


__all__ = ["REGISTRY", "TASKS", "PointwiseTask", "Task", "TaskDims", "TaskError",
           "TaskOptions", "build_tasks", "check_task_names", "companion_metric", "main_metric",
           "task_class"]
