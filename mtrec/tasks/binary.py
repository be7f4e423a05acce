"""Binary tasks: ``click``, ``like``, ``cart``, ``collect``, ``purchase`` (optionally ESMM).

An example is one interaction; the label says whether it includes the behaviour.  ``like``
uses ``like`` events when the dataset has them, else ``rating >= like_threshold`` over rated
interactions.  With ``esmm`` the purchase probability is ``p(click) * p(purchase | click)``
(Ma et al., 2018), trained on every interaction against the purchase label, which needs the
``click`` task in the same model.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mtrec.data.interactions import Interactions
from mtrec.eval.metrics import binary_metrics
from mtrec.tasks.base import Labels, PointwiseTask, TaskError, both_classes


class BinaryTask(PointwiseTask):
    """Whether an interaction includes behaviour ``name`` (one subclass per behaviour)."""

    out_dim = 1
    main_metric = "auc"

    @property
    def esmm(self) -> bool:
        return self.name == "purchase" and self.options.esmm

    def labels(self, data: Interactions) -> Labels:
        if self.name == "like" and not data.has_behavior("like").any():
            rated = ~np.isnan(data.rating)
            positive = np.nan_to_num(data.rating) >= self.options.like_threshold
            return Labels(positive.astype(np.float32)[:, None], rated)
        positive = data.has_behavior(self.name)
        return Labels(positive.astype(np.float32)[:, None], np.ones(len(data), dtype=bool))

    def check(self, data: Interactions, task_names: tuple[str, ...]) -> None:
        if self.esmm and "click" not in task_names:
            raise TaskError("task 'purchase' with esmm = true needs the 'click' task too")
        labels = self.labels(data)
        if self.name == "like" and not data.has_behavior("like").any():
            what = f"a rating >= {self.options.like_threshold} (or 'like' events)"
            if not labels.mask.any():
                raise TaskError("task 'like': the dataset has neither 'like' nor 'rate' events")
        else:
            what = f"behaviour {self.name!r}"
        both_classes(self.name, labels.values[:, 0] > 0, labels.mask, what, data)

    def logit(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return outputs[self.name][:, 0]

    def predict(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        prob = torch.sigmoid(self.logit(outputs))
        if self.esmm:
            prob = prob * torch.sigmoid(outputs["click"][:, 0])
        return prob

    def loss(self, outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        if self.esmm:
            prob = self.predict(outputs).clamp(1e-6, 1 - 1e-6)
            return F.binary_cross_entropy(prob.float(), labels[:, 0])
        return F.binary_cross_entropy_with_logits(self.logit(outputs).float(), labels[:, 0])

    def metrics(self, labels: np.ndarray, preds: np.ndarray,
                users: np.ndarray) -> dict[str, float]:
        return binary_metrics(labels[:, 0], preds, users)


class ClickTask(BinaryTask):
    name, behaviors = "click", ("click",)


class LikeTask(BinaryTask):
    name, behaviors = "like", ("like", "rate")  # like events, else ratings


class CartTask(BinaryTask):
    name, behaviors = "cart", ("cart",)


class CollectTask(BinaryTask):
    name, behaviors = "collect", ("collect",)


class PurchaseTask(BinaryTask):
    name, behaviors = "purchase", ("purchase",)


BINARY_TASKS = (ClickTask, LikeTask, CartTask, CollectTask, PurchaseTask)
