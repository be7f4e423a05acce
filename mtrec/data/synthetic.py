"""Small synthetic datasets with planted structure, for tests whose right answer is known.

Every item belongs to one category and its title/text is made of that category's words
(plus a few generic ones), so a text model can recover the category from text.  Every
user has a favourite category (``user_taste``) that receives ``taste_strength`` of their
interactions.  Each interaction is a funnel: a ``view``, possibly a ``click``, after a
click possibly ``cart``/``collect``/``rate``, after a cart possibly a ``purchase``.
Ratings are 4-5 for favourite-category items and 1-3 otherwise.

>>> data = generate(SyntheticConfig(n_users=3, n_items=10, seed=1))
>>> data.result.users.num_rows, data.result.items.num_rows, data.user_taste.shape
(3, 10, (3,))
>>> data.result.dataset
'synthetic'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from mtrec.data.builder import EventsBuilder, ImportResult, ItemsBuilder, UsersBuilder, finish
from mtrec.data.reader import RowLog

#: Category name and the words only items of that category use in their text.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("beauty", ("lipstick", "rouge", "gloss", "mascara", "eyeliner", "blush", "serum")),
    ("electronics", ("laptop", "charger", "headphones", "keyboard", "monitor", "bluetooth")),
    ("sports", ("running", "sneakers", "yoga", "dumbbell", "jersey", "racket", "cycling")),
    ("kitchen", ("skillet", "blender", "spatula", "kettle", "cookware", "teapot", "oven")),
    ("books", ("novel", "paperback", "hardcover", "chapter", "poetry", "biography")),
    ("toys", ("puzzle", "doll", "lego", "robot", "plush", "kite", "marbles")),
    ("garden", ("shovel", "seeds", "fertilizer", "hose", "rake", "planter", "tulip")),
    ("pets", ("leash", "kibble", "aquarium", "catnip", "collar", "litter", "terrier")),
)
#: Words any item may use; they carry no category signal.
GENERIC_WORDS: tuple[str, ...] = ("new", "premium", "classic", "value", "quality", "set")

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes, funnel probabilities and switches of a synthetic dataset.

    ``events_per_user`` is the inclusive range of interactions (funnels, each starting
    with a ``view``) per user; the derived click/cart/... events come on top.
    """

    n_users: int = 200
    n_items: int = 100
    n_categories: int = 5
    events_per_user: tuple[int, int] = (8, 20)
    scenarios: tuple[str, ...] = ("home", "search")
    taste_strength: float = 0.8  # fraction of a user's interactions in their favourite
    p_click: float = 0.5  # P(click | view)
    p_cart: float = 0.4  # P(cart | click)
    p_collect: float = 0.2  # P(collect | click)
    p_purchase: float = 0.5  # P(purchase | cart)
    p_rate: float = 0.3  # P(rate | click)
    with_timestamps: bool = True
    with_text: bool = True
    seed: int = 0
    start: datetime = datetime(2024, 1, 1)

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise ValueError(f"SyntheticConfig.{name}: {why} (got {getattr(self, name)!r})")

        if self.n_users < 1:
            fail("n_users", "must be >= 1")
        if not 1 <= self.n_categories <= len(CATEGORIES):
            fail("n_categories", f"must be between 1 and {len(CATEGORIES)}")
        if self.n_items < self.n_categories:
            fail("n_items", f"must be >= n_categories ({self.n_categories})")
        epu = self.events_per_user
        if len(epu) != 2 or not 1 <= epu[0] <= epu[1]:
            fail("events_per_user", "must be a (low, high) pair with 1 <= low <= high")
        if not self.scenarios or any(not s.strip() for s in self.scenarios):
            fail("scenarios", "must be a non-empty tuple of non-blank names")
        for name in ("taste_strength", "p_click", "p_cart", "p_collect", "p_purchase", "p_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                fail(name, "must be a probability in [0, 1]")
        if self.seed < 0:
            fail("seed", "must be >= 0")


@dataclass(frozen=True, eq=False)
class SyntheticData:
    """A generated dataset and the structure planted in it.

    User ``u`` has id ``user_ids[u]`` and favourite category ``user_taste[u]``; item ``i``
    has id ``item_ids[i]`` and category index ``item_category[i]``, whose name is
    ``category_names[c]`` and whose text words are ``category_words[c]``.
    """

    config: SyntheticConfig
    result: ImportResult
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    user_taste: IntArray
    item_category: IntArray
    category_names: tuple[str, ...]
    category_words: tuple[tuple[str, ...], ...]
    generic_words: tuple[str, ...] = GENERIC_WORDS


def generate(config: SyntheticConfig | None = None) -> SyntheticData:
    """Generate a deterministic synthetic dataset (same config and seed, same tables)."""
    cfg = config or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    names = tuple(name for name, _ in CATEGORIES[: cfg.n_categories])
    words = tuple(w for _, w in CATEGORIES[: cfg.n_categories])
    user_ids = tuple(f"u{u:05d}" for u in range(cfg.n_users))
    item_ids = tuple(f"i{i:05d}" for i in range(cfg.n_items))
    # Balanced categories (every category has an item), in random item order.
    item_category = rng.permutation(np.arange(cfg.n_items) % cfg.n_categories).astype(np.int64)
    user_taste = rng.integers(0, cfg.n_categories, size=cfg.n_users, dtype=np.int64)

    items = ItemsBuilder()
    for i, item_id in enumerate(item_ids):
        _add_item(items, item_id, int(item_category[i]), names, words, cfg, rng)
    users = UsersBuilder()
    for user_id in user_ids:
        gender = "f" if rng.random() < 0.5 else "m"
        users.add(user_id, {"age": int(rng.integers(18, 70)), "gender": gender})

    events = EventsBuilder()
    for u, user_id in enumerate(user_ids):
        picks = _user_items(int(user_taste[u]), item_category, cfg, rng)
        t = cfg.start + timedelta(seconds=int(rng.integers(0, 7 * 86400)))
        for i in picks:
            # At least an hour apart: longer than any funnel (<= 5 steps of < 2 min).
            t += timedelta(seconds=int(rng.integers(3600, 86400)))
            favourite = bool(item_category[i] == user_taste[u])
            _add_funnel(events, user_id, item_ids[i], favourite, t, cfg, rng)

    result = finish(
        dataset="synthetic", events=events, items=items, users=users, log=RowLog(), files=[]
    )
    return SyntheticData(
        config=cfg,
        result=result,
        user_ids=user_ids,
        item_ids=item_ids,
        user_taste=user_taste,
        item_category=item_category,
        category_names=names,
        category_words=words,
    )


def _add_item(
    items: ItemsBuilder,
    item_id: str,
    category: int,
    names: tuple[str, ...],
    words: tuple[tuple[str, ...], ...],
    cfg: SyntheticConfig,
    rng: np.random.Generator,
) -> None:
    own = words[category]
    brand = f"{names[category]}-brand-{int(rng.integers(0, 3))}"
    title = text = None
    if cfg.with_text:
        head = [str(w) for w in rng.choice(own, size=2, replace=False)]
        generic = str(rng.choice(GENERIC_WORDS))
        title = f"{generic} {head[0]} {head[1]}"
        body = [str(w) for w in rng.choice(own, size=4, replace=True)]
        text = f"{brand} {' '.join(body)} {generic} {rng.choice(GENERIC_WORDS)}"
    created = None
    if cfg.with_timestamps:
        created = cfg.start - timedelta(days=int(rng.integers(1, 365)))
    items.add(
        item_id,
        scenario=str(rng.choice(cfg.scenarios)),
        title=title,
        text=text,
        category=names[category],
        brand=brand,
        price=round(float(rng.lognormal(3.0 + 0.3 * category, 0.4)), 2),
        created_at=created,
        attributes={"category_index": category},
    )


def _user_items(
    taste: int, item_category: IntArray, cfg: SyntheticConfig, rng: np.random.Generator
) -> IntArray:
    """Item indices of one user's interactions: round(strength * n) from the favourite."""
    low, high = cfg.events_per_user
    n = int(rng.integers(low, high + 1))
    fav_pool = np.flatnonzero(item_category == taste)
    other_pool = np.flatnonzero(item_category != taste)
    n_fav = n if other_pool.size == 0 else round(cfg.taste_strength * n)
    fav = rng.choice(fav_pool, size=n_fav, replace=n_fav > fav_pool.size)
    rest = rng.choice(other_pool, size=n - n_fav, replace=n - n_fav > other_pool.size)
    return rng.permutation(np.concatenate([fav, rest])).astype(np.int64)


def _add_funnel(
    events: EventsBuilder,
    user_id: str,
    item_id: str,
    favourite: bool,
    t: datetime,
    cfg: SyntheticConfig,
    rng: np.random.Generator,
) -> None:
    """One interaction: view, then click/cart/collect/purchase/rate by the funnel."""
    scenario = str(rng.choice(cfg.scenarios))
    step = 0

    def emit(behavior: str, value: float = 1.0) -> None:
        nonlocal step
        ts = t + timedelta(seconds=step) if cfg.with_timestamps else None
        events.add(user_id, item_id, behavior, value, ts=ts, scenario=scenario)
        step += int(rng.integers(1, 120))

    emit("view")
    if rng.random() >= cfg.p_click:
        return
    emit("click")
    carted = rng.random() < cfg.p_cart
    if carted:
        emit("cart")
    if rng.random() < cfg.p_collect:
        emit("collect")
    if carted and rng.random() < cfg.p_purchase:
        emit("purchase")
    if rng.random() < cfg.p_rate:
        emit("rate", float(rng.integers(4, 6) if favourite else rng.integers(1, 4)))
