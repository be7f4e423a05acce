"""The task registry: one file per task, each owning labels, head, loss and metrics."""

from __future__ import annotations

from mtrec.tasks.base import PointwiseTask, TaskError, TaskOptions
from mtrec.tasks.binary import BINARY_TASKS, BinaryTask
from mtrec.tasks.engagement import EngagementTask
from mtrec.tasks.next_item import NextItemTask
from mtrec.tasks.rating import RatingTask

TASKS = ("next_item", *BINARY_TASKS, "rating", "engagement")


def check_task_names(names: tuple[str, ...]) -> None:
    if not names:
        raise TaskError(f"no task given; known tasks: {', '.join(TASKS)}")
    for name in names:
        if name not in TASKS:
            raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    if len(set(names)) != len(names):
        raise TaskError(f"a task is listed twice: {', '.join(names)}")


def build_tasks(names: tuple[str, ...], options: TaskOptions, n_items: int, tower_in: int,
                tower_dim: int) -> tuple[NextItemTask | None, dict[str, PointwiseTask]]:
    """The retrieval task (if asked for) and the pointwise tasks by name."""
    check_task_names(names)
    next_item = NextItemTask(options, n_items) if "next_item" in names else None
    pointwise: dict[str, PointwiseTask] = {}
    for name in names:
        if name in BINARY_TASKS:
            pointwise[name] = BinaryTask(name, tower_in, tower_dim, options)
        elif name == "rating":
            pointwise[name] = RatingTask(tower_in, tower_dim, options)
        elif name == "engagement":
            pointwise[name] = EngagementTask(tower_in, tower_dim, options)
    return next_item, pointwise


__all__ = ["TASKS", "PointwiseTask", "TaskError", "TaskOptions", "build_tasks",
           "check_task_names"]
