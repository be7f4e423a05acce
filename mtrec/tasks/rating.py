"""``rating``: regression of the rating value of rated interactions (RMSE, MAE)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.data.interactions import Interactions
from mtrec.data.split import TRAIN
from mtrec.eval.metrics import regression_metrics
from mtrec.tasks.base import (
    Labels,
    PointwiseTask,
    TaskDims,
    TaskError,
    TaskOptions,
    present_behaviors,
)


class RatingTask(PointwiseTask):
    """Predicts ``mean + tower output``; ``mean`` is the training mean rating."""

    name = "rating"
    main_metric = "rmse"
    companion_metric = "mae"
    behaviors = ("rate",)
    out_dim = 1
    mean: torch.Tensor

    def __init__(self, options: TaskOptions, dims: TaskDims) -> None:
        super().__init__(options, dims)
        self.register_buffer("mean", torch.zeros(()))

    def labels(self, data: Interactions) -> Labels:
        rated = ~np.isnan(data.rating)
        return Labels(np.nan_to_num(data.rating).astype(np.float32)[:, None], rated)

    def check(self, data: Interactions, task_names: tuple[str, ...]) -> None:
        rated = ~np.isnan(data.rating) & (data.part == TRAIN)
        if not rated.any():
            raise TaskError("task 'rating': no training interaction has behaviour 'rate' "
                            f"with a rating value ({present_behaviors(data)})")

    def prepare(self, data: Interactions) -> None:
        rated = ~np.isnan(data.rating) & (data.part == TRAIN)
        self.mean.fill_(float(data.rating[rated].mean()))

    def predict(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.mean + outputs[self.name][:, 0].float()

    def loss(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.predict(outputs), labels[:, 0])

    def metrics(self, labels: np.ndarray, preds: np.ndarray,
                users: np.ndarray) -> dict[str, float]:
        return regression_metrics(labels[:, 0], preds)
