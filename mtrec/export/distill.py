"""A smaller student text encoder distilled from a bundle's encoder (the teacher).

The student keeps the teacher's tokenizer, width and output space and a subset of its
transformer layers (evenly spread, the first and the last kept), and is trained to
reproduce the teacher's vectors on the catalog's texts and on free-text queries cut from
them (short spans of words, as people type into a search box).  Because the output space is
the teacher's, the bundle's model needs no retraining: :func:`distill_bundle` re-encodes
the catalog with the student and writes a bundle that serves (and exports) with it.

A share of the catalog's items is held out of training: the student's cosine to the teacher
on their texts and queries is what early stopping watches and what the bundle records.
"""

from __future__ import annotations

import copy
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtrec.text.encoder import TextEncoder, mean_pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillConfig:
    """How to build and train the student."""

    layers: int = 3  # transformer layers the student keeps
    epochs: int = 30  # at most; early stopping usually ends sooner
    patience: int = 3  # epochs without a better held-out cosine before stopping
    batch_size: int = 32
    lr: float = 1e-4
    holdout: float = 0.1  # share of catalog items kept out of training (the check)
    queries: int = 1  # free-text queries cut from each catalog text
    max_texts: int = 0  # catalog texts used (0: all)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layers < 1:
            raise ValueError(f"--layers must be >= 1, got {self.layers}")
        if not 0.0 < self.holdout < 0.5:
            raise ValueError(f"holdout must be in (0, 0.5), got {self.holdout}")
        for name in ("epochs", "patience", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def kept_layers(total: int, keep: int) -> list[int]:
    """Indices of the ``keep`` layers (of ``total``) a student keeps: evenly spread, first
    and last included.

    >>> kept_layers(6, 3)
    [0, 2, 5]
    >>> kept_layers(6, 1)
    [5]
    """
    if keep > total:
        raise ValueError(f"the student cannot keep {keep} layers: the teacher has {total}")
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def make_student(teacher: torch.nn.Module, keep: int) -> tuple[torch.nn.Module, list[int]]:
    """A copy of the (BERT-like) ``teacher`` with only ``keep`` of its layers."""
    layers = getattr(getattr(teacher, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"cannot distil a {type(teacher).__name__}: it has no encoder.layer "
                         "list (a BERT-like model is needed)")
    chosen = kept_layers(len(layers), keep)
    student: Any = copy.deepcopy(teacher)
    student.encoder.layer = torch.nn.ModuleList(copy.deepcopy(layers[i]) for i in chosen)
    student.config.num_hidden_layers = len(chosen)
    for param in student.parameters():
        param.requires_grad_(True)
    return student, chosen


def query_texts(texts: Sequence[str], per_text: int, rng: random.Random) -> list[str]:
    """Short spans of words (1 to 5) cut from ``texts``, lower-cased, ``per_text`` each.

    >>> q = query_texts(["Red Cotton Summer Dress"], 2, random.Random(0))
    >>> len(q) == 2 and all(w in "red cotton summer dress" for w in q)
    True
    """
    out = []
    for text in texts:
        words = text.split()
        for _ in range(per_text if words else 0):
            n = rng.randint(1, min(5, len(words)))
            start = rng.randint(0, len(words) - n)
            out.append(" ".join(words[start : start + n]).lower())
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``[N, D]`` arrays (0 for a zero row).

    >>> cosines(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [1.0, 1.0]]))
    array([1., 0.])
    """
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(1) / np.maximum(norms, 1e-12), 0.0)


def _loss(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """1 - cosine plus the squared error relative to the target's size."""
    cos = torch.nn.functional.cosine_similarity(got, want, dim=1)
    scale = want.pow(2).sum(1).mean().clamp(min=1e-12)
    return (1 - cos).mean() + (got - want).pow(2).sum(1).mean() / scale


@dataclass
class Distilled:
    """The trained student (in ``encoder``) and what training measured."""

    encoder: TextEncoder
    layers: list[int]
    history: list[dict[str, float]]
    checks: dict[str, float]


class Distiller:
    """Trains a student of ``teacher``; :meth:`fit` returns the :class:`Distilled`."""

    def __init__(self, teacher: TextEncoder, config: DistillConfig,
                 report: Callable[[dict[str, float]], None] | None = None) -> None:
        self.teacher = teacher
        self.config = config
        self.report = report

    def fit(self, texts: Sequence[str], targets: np.ndarray | None = None) -> Distilled:
        """Distil on catalog ``texts`` (with the teacher's vectors ``targets`` when already
        known, else the teacher encodes them)."""
        cfg = self.config
        rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        rows = [i for i, t in enumerate(texts) if t][: cfg.max_texts or None]
        if len(rows) < 10:
            raise ValueError(f"distillation needs at least 10 texts, got {len(rows)}")
        rng.shuffle(rows)
        n_held = max(1, int(len(rows) * cfg.holdout))
        held, train = rows[:n_held], rows[n_held:]
        item_vec = (self.teacher.encode([texts[i] for i in rows]) if targets is None
                    else np.asarray(targets, dtype=np.float32)[rows])
        vec_of = dict(zip(rows, item_vec, strict=True))
        sets = {}
        for name, part in (("train", train), ("held", held)):
            queries = query_texts([texts[i] for i in part], cfg.queries, rng)
            sets[name] = ([texts[i] for i in part] + queries,
                          np.concatenate([np.stack([vec_of[i] for i in part]),
                                          self.teacher.encode(queries)]))
        student_model, chosen = make_student(self.teacher.model, cfg.layers)
        student = TextEncoder(self.teacher.config, self.teacher.tokenizer, student_model,
                              self.teacher.path)
        history, best = self._train(student, sets["train"], sets["held"], n_items=len(held))
        student.model.load_state_dict(best)
        got = student.encode(sets["held"][0])
        cos = cosines(got, sets["held"][1])
        checks = {"mean_cosine": float(cos[:len(held)].mean()),
                  "min_cosine": float(cos[:len(held)].min()),
                  "query_mean_cosine": float(cos[len(held):].mean()),
                  "held_out_items": len(held), "train_texts": len(sets["train"][0])}
        return Distilled(student, chosen, history, checks)

    def _train(self, student: TextEncoder, train: tuple[list[str], np.ndarray],
               held: tuple[list[str], np.ndarray], n_items: int
               ) -> tuple[list[dict[str, float]], dict[str, torch.Tensor]]:
        cfg = self.config
        texts, targets = train
        optimizer = torch.optim.AdamW(student.model.parameters(), lr=cfg.lr)
        history: list[dict[str, float]] = []
        best_cos, best, waited = -2.0, copy.deepcopy(student.model.state_dict()), 0
        # batches of similar length (little padding), visited in a new order each epoch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[s : s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]
        rng = random.Random(cfg.seed + 1)
        for epoch in range(1, cfg.epochs + 1):
            started, total = time.perf_counter(), 0.0
            student.model.train()
            rng.shuffle(batches)
            for batch in batches:
                tokens = student.tokenize([texts[i] for i in batch])
                out = student.model(**tokens).last_hidden_state
                loss = _loss(mean_pool(out, tokens["attention_mask"]),
                             torch.from_numpy(targets[batch]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            cos = cosines(student.encode(held[0][:n_items]), held[1][:n_items])
            row = {"epoch": epoch, "loss": total / len(texts), "held_mean_cosine":
                   float(cos.mean()), "held_min_cosine": float(cos.min()),
                   "seconds": time.perf_counter() - started}
            history.append(row)
            if self.report is not None:
                self.report(row)
            if row["held_mean_cosine"] > best_cos + 1e-5:
                best_cos, waited = row["held_mean_cosine"], 0
                best = copy.deepcopy(student.model.state_dict())
            else:
                waited += 1
                if waited >= cfg.patience:
                    break
        return history, best


def describe(distilled: Distilled) -> dict[str, Any]:
    """What a bundle records about its distilled encoder."""
    return {"layers": distilled.layers, "checks": distilled.checks,
            "epochs": len(distilled.history), "history": distilled.history}


def reencode(table: torch.Tensor, texts: Sequence[str],
             encode: Callable[[list[str]], np.ndarray]) -> None:
    """Overwrite the catalog's text-vector ``table`` rows (row 0 padding; items without
    text keep theirs) with ``encode``'s vectors of their ``texts``."""
    rows = [i for i, t in enumerate(texts) if i > 0 and t]
    table[rows] = torch.from_numpy(encode([texts[i] for i in rows]))


def distill_bundle(src: Path, out: Path, config: DistillConfig, min_cosine: float = 0.9,
                   report: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Write to ``out`` the bundle of ``src`` with a student encoder (``TEXT_MODEL_DIR``) and the
    catalog re-encoded by it; its distillation record (also under ``distill`` in
    ``config.json``).  A student whose held-out mean cosine to the teacher is below
    ``min_cosine`` stops it with the figure named (nothing is written)."""
    from mtrec import bundle
    from mtrec.export.bundle import copy_serving_files, staged
    from mtrec.export.text import ExportError
    from mtrec.tensor_files import save_weights

    meta = bundle.read_meta(src)
    for kind, what in (("export", "an exported"), ("distill", "a distilled")):
        if meta.get(kind):
            raise ExportError(f"{src} is already {what} bundle; distil its source bundle "
                              f"({meta[kind]['source']})")
    text_config = bundle.encoder_config(src, meta)
    if text_config is None:
        raise ExportError(f"{src}: the bundle has no text encoder to distil (trained without "
                          "text, or fine-tuned before bundles kept the tuned weights)")
    teacher = TextEncoder.from_config(text_config)
    texts = bundle.read_catalog(src).texts
    weights = bundle.read_weights(src)
    table = weights["item_tower.text_vectors"]
    distilled = Distiller(teacher, config, report).fit(texts[1:], table[1:].numpy())
    held = distilled.checks["mean_cosine"]
    if held < min_cosine:
        raise ExportError(f"distillation check failed: held-out mean cosine {held:.4f} is "
                          f"below {min_cosine} (nothing was written); keep more layers "
                          "(--layers) or train longer")
    reencode(table, texts, distilled.encoder.encode)
    record = {"source": str(src), "teacher": teacher.model_key, "config": asdict(config),
              "min_cosine": min_cosine, **describe(distilled)}
    with staged(out) as stage:
        model: Any = distilled.encoder.model
        model.save_pretrained(str(stage / bundle.TEXT_MODEL_DIR))
        teacher.tokenizer.save_pretrained(str(stage / bundle.TEXT_MODEL_DIR))
        save_weights(stage / "model.safetensors", weights)
        copy_serving_files(src, stage)
        (stage / "config.json").write_text(json.dumps({**meta, "distill": record}, indent=2))
    return record
