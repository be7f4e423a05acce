"""``engagement``: long-term engagement from timestamps.

Two labels per interaction at time ``t``: ``log1p`` of the number of the user's interactions
in ``(t, t + horizon_days]`` (regression, RMSE) and whether the user comes back within
``return_days`` after at least an hour away (binary, AUC).  Labels only look at
interactions of the same or earlier split parts, so training labels never see validation or
test events; an interaction whose window runs past the last visible timestamp is censored
(unlabelled).  That is only sound under a global time cut, hence the ``temporal`` protocol.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.data.interactions import Interactions
from mtrec.eval.metrics import binary_metrics, regression_metrics
from mtrec.tasks.base import Labels, PointwiseTask, TaskError

DAY = 86_400
SESSION_GAP = 3_600
_SHIFT = np.int64(1) << 35


class EngagementTask(PointwiseTask):
    name = "engagement"
    main_metric = "log_count_rmse"
    companion_metric = "return_auc"
    needs_time = True
    protocols = ("temporal",)  # labels look ahead: only a global time cut keeps them honest
    out_dim = 2  # [log1p(count in horizon), return logit]

    def labels(self, data: Interactions) -> Labels:
        horizon = self.options.horizon_days * DAY
        back = self.options.return_days * DAY
        values = np.zeros((len(data), 2), np.float32)
        mask = np.zeros(len(data), bool)
        if not data.has_time:
            return Labels(values, mask)
        for part in np.unique(data.part):
            visible = data.part <= part
            keys = np.sort(data.user[visible] * _SHIFT + data.ts[visible])
            rows = np.flatnonzero(data.part == part)
            base = data.user[rows] * _SHIFT + data.ts[rows]

            def count(lo: int, hi: int, base: np.ndarray = base,
                      keys: np.ndarray = keys) -> np.ndarray:
                return (np.searchsorted(keys, base + hi, "right")
                        - np.searchsorted(keys, base + lo, "right"))

            values[rows, 0] = np.log1p(count(0, horizon))
            values[rows, 1] = count(SESSION_GAP, back) > 0
            mask[rows] = data.ts[rows] + max(horizon, back) <= data.ts[visible].max()
        return Labels(values, mask)

    def check(self, data: Interactions, task_names: tuple[str, ...]) -> None:
        if not data.has_time:
            raise TaskError("task 'engagement' needs timestamps on every event; "
                            "this dataset has none (or only some)")
        super().check(data, task_names)

    def requirement(self) -> str:
        return (f"needs {self.options.horizon_days} days of follow-up "
                "inside the training period")

    def predict(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The expected number of interactions in the horizon."""
        return torch.expm1(outputs[self.name][:, 0].float().clamp(min=0))

    def loss(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        out = outputs[self.name].float()
        return (F.mse_loss(out[:, 0], labels[:, 0])
                + F.binary_cross_entropy_with_logits(out[:, 1], labels[:, 1]))

    def eval_scores(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = outputs[self.name].float()
        return torch.stack([out[:, 0], torch.sigmoid(out[:, 1])], 1)

    def metrics(self, labels: np.ndarray, preds: np.ndarray,
                users: np.ndarray) -> dict[str, float]:
        """``preds`` here is :meth:`eval_scores`'s output ``[T, 2]``."""
        reg = regression_metrics(labels[:, 0], preds[:, 0])
        out = {f"log_count_{k}": v for k, v in reg.items()}
        out.update({f"return_{k}": v for k, v in binary_metrics(labels[:, 1], preds[:, 1],
                                                                users).items()})
        return out
