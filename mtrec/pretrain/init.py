"""Start a model from a pre-trained one (``mtrec train --init DIR``).

``DIR`` is any bundle: one written by ``mtrec pretrain`` or by ``mtrec train``.  Every weight
whose name and shape fit the new model is loaded.  The parts that belong to the old catalog
(its ID embeddings, its cached text vectors, its popularity prior) are left out by design;
weights whose shape differs (for example scenario tables of another scenario count) are
left out and named; a longer history window keeps the learned positions it shares.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from mtrec import bundle
from mtrec.config import ConfigError
from mtrec.models.model import MultiTaskRecommender
from mtrec.run_config import RunConfig

# what the new run sets from its own catalog rather than trains (the tasks' buffers, a
# popularity prior or a mean rating, are set from its data too: see _task_buffers)
DATA_PARTS = ("item_tower.text_vectors", "item_tower.has_text", "item_tower.text_only")
# weights that describe the catalog a model was trained on, never another's
CATALOG_PARTS = ("item_tower.ids.", *DATA_PARTS)
POSITIONS = "user_tower.position.weight"


class InitError(ConfigError):
    """The model to start from cannot initialise this run; the message says why."""


@dataclass
class InitReport:
    """What :func:`load_initial` did with each weight of the pre-trained model."""

    source: Path
    loaded: list[str] = field(default_factory=list)
    catalog: list[str] = field(default_factory=list)  # left out by design (see describe)
    mismatched: list[str] = field(default_factory=list)  # "name: old shape -> new shape"
    unused: list[str] = field(default_factory=list)  # not in the new model
    fresh: list[str] = field(default_factory=list)  # the new model's, not in the old one

    def describe(self) -> str:
        lines = [f"init from {self.source}: loaded {len(self.loaded)} weights; left out by "
                 f"design {len(self.catalog)} that belong to the old catalog or that this run "
                 f"fits itself ({_short(self.catalog)})"]
        if self.mismatched:
            lines.append(f"  left out (shape differs): {_short(self.mismatched)}")
        if self.unused:
            lines.append(f"  not in this model: {_short(self.unused)}")
        if self.fresh:
            lines.append(f"  trained from scratch: {_short(self.fresh)}")
        return "\n".join(lines)


def _short(names: list[str], most: int = 8) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def encoder_of(path: Path) -> str:
    """The text encoder the model at ``path`` was trained with (a fine-tuned one: the
    bundle's own copy; one tuned before copies were saved: the name it started from), or
    ``""`` when it read no text."""
    meta = bundle.read_meta(path)
    if not meta.get("text_dim"):
        return ""
    text = bundle.encoder_config(path, meta)
    return text.model if text is not None else str(meta["run"]["model"]["text"]["model"])


def _resolved(name: str) -> str:
    """``name`` as the folder it loads from (``default`` and its folder are one encoder)."""
    from mtrec.text.encoder import TextModelError, resolve_model_path

    try:
        return str(Path(resolve_model_path(name)).resolve())
    except (TextModelError, OSError, ValueError):  # not loadable here: keeps its name
        return name


def check_encoder(path: Path, config: RunConfig) -> None:
    """Refuse a start whose text encoder differs from the run's, naming both."""
    if not path.is_dir():
        raise InitError(f"--init {path}: no such folder (give a bundle written by `mtrec "
                        "pretrain` or `mtrec train`)")
    try:
        theirs = encoder_of(path)
    except bundle.BundleError as exc:
        raise InitError(f"--init {path}: {exc}") from exc
    ours = config.model.text.model if config.model.item.use_text else ""
    if theirs and ours and theirs != ours and _resolved(theirs) != _resolved(ours):
        raise InitError(
            f"--init {path}: it was trained with text encoder {theirs!r}, this run's config "
            f"has model.text.model = {ours!r}; text vectors of another encoder would not fit "
            f"its adapter (set model.text.model = {theirs!r}, or start from a model trained "
            f"with {ours!r})")


def load_initial(model: MultiTaskRecommender, path: Path, config: RunConfig) -> InitReport:
    """Load into ``model`` what fits of the model at ``path`` (checked first)."""
    check_encoder(path, config)
    weights = bundle.read_weights(path)
    own = model.state_dict()
    report = InitReport(path)
    prepared = _task_buffers(model)  # what each task prepared from this run's data
    seen: set[str] = set()  # this model's weights the start has, loaded or not fitting
    for name, value in weights.items():
        if name.startswith(CATALOG_PARTS) or name in prepared:
            report.catalog.append(name)
            continue
        if name not in own:
            report.unused.append(name)
            continue
        seen.add(name)
        if value.shape == own[name].shape:
            own[name] = value.to(own[name].dtype)
            report.loaded.append(name)
        elif name == POSITIONS and value.shape[1:] == own[name].shape[1:]:
            rows = min(len(value), len(own[name]))  # the positions both windows have
            own[name] = own[name].clone()
            own[name][:rows] = value[:rows]
            report.loaded.append(f"{name} (first {rows} positions)")
        else:
            report.mismatched.append(f"{name}: {tuple(value.shape)} -> "
                                     f"{tuple(own[name].shape)}")
    report.fresh = [n for n in own if n not in seen and not n.startswith(DATA_PARTS)
                    and n not in prepared]
    if not report.loaded:
        raise InitError(f"--init {path}: none of its weights fit this model (shapes: "
                        f"{_short(report.mismatched) or 'no common weights'})")
    model.load_state_dict(own)
    return report


def _task_buffers(model: MultiTaskRecommender) -> set[str]:
    """The tasks' buffers (a popularity prior, a mean rating): set by ``prepare`` from this
    run's training data, never taken from another run's."""
    return {f"tasks.{name}.{buffer}" for name, task in model.tasks.items()
            for buffer, _ in task.named_buffers()}


def keeps_start_match(model: MultiTaskRecommender, config: RunConfig) -> bool:
    """The run started from a model whose text-match scale it carries: the network trains
    with the channel on at that scale, so the scale is kept rather than chosen again after
    training.  (Chosen again, it no longer fitted the network: Office at 25 % of its users
    fell to 0.0357 NDCG@10, below the 0.0383 of no training at all; trained with the channel
    off and chosen afterwards on 49 users' validation, it was 0 and Office at 1 % fell to
    0.0163.)"""
    return bool(config.train.init) and model.text_match is not None and model.text_match.active


def initialise(model: MultiTaskRecommender, config: RunConfig, log: bool = True
               ) -> InitReport | None:
    """:func:`load_initial` from ``config.train.init`` when it is set (a report is printed)."""
    if not config.train.init:
        return None
    report = load_initial(model, Path(config.train.init), config)
    if log:
        print(report.describe(), file=sys.stderr, flush=True)
    return report
