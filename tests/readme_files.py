"""Small files in each shape the README's "Bring your own data" paths start from.

Planted structure: every user prefers one of three categories (most of their events fall in
it), so a trained model has something to find; ids are the ones the README's requests use.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

N_USERS, N_ITEMS, N_CATEGORIES = 40, 30, 3
WORDS = ({"lipstick", "mascara", "blush"}, {"puzzle", "robot", "kite"},
         {"kettle", "skillet", "whisk"})


def _category(item: int) -> int:
    return item % N_CATEGORIES


def _histories(rng: random.Random, length: tuple[int, int]) -> list[list[int]]:
    """Per user, items 0..N_ITEMS-1 drawn mostly from the user's preferred category."""
    out = []
    for user in range(N_USERS):
        liked = [i for i in range(N_ITEMS) if _category(i) == user % N_CATEGORIES]
        others = [i for i in range(N_ITEMS) if i not in liked]
        n = rng.randint(*length)
        out.append([rng.choice(liked if rng.random() < 0.8 else others) for _ in range(n)])
    return out


def _title(item: int) -> str:
    words = sorted(WORDS[_category(item)])
    return f"{words[item % 3]} {words[(item + 1) % 3]} model {item}"


def write_sequence(folder: Path, seed: int = 0) -> None:
    """``events.csv`` (user_id,item_id,seq; rows shuffled, so only seq orders them) and
    ``items.csv`` (item_id,title,categories)."""
    rng = random.Random(seed)
    rows, seq = [], 0
    for user, items in enumerate(_histories(rng, (6, 10))):
        for item in items:
            rows.append(f"u{user + 1},i{item + 1},{seq}")
            seq += 1
    rng.shuffle(rows)
    (folder / "events.csv").write_text("user_id,item_id,seq\n" + "\n".join(rows) + "\n")
    catalog = [f"i{i + 1},{_title(i)},cat{_category(i)}" for i in range(N_ITEMS)]
    (folder / "items.csv").write_text("item_id,title,categories\n" + "\n".join(catalog) + "\n")


def write_pairs(folder: Path, seed: int = 0) -> None:
    """JData's layout: count.txt and ``user item`` pair files per behaviour (ids from 1)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "count.txt").write_text(json.dumps({"user": N_USERS, "item": N_ITEMS}))
    files: dict[str, list[str]] = {n: [] for n in ("buy", "cart", "collect", "validation",
                                                   "test")}
    for user, items in enumerate(_histories(rng, (8, 14))):
        for n, item in enumerate(dict.fromkeys(items)):
            pair = f"{user + 1} {item + 1}"
            files["cart" if n % 2 == 0 else "collect"].append(pair)
            if n % 3 == 0:
                files["buy"].append(pair)
        files["validation" if user % 2 else "test"].append(f"{user + 1} {items[-1] + 1}")
    for name, lines in files.items():
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")


def write_ratings(folder: Path, seed: int = 0) -> None:
    """``ratings.csv`` (user_id,item_id,rating,timestamp) and ``movies.csv`` (movie,name):
    users rate their category high."""
    rng = random.Random(seed)
    rows, start = [], 1_600_000_000
    for user, items in enumerate(_histories(rng, (8, 12))):
        for n, item in enumerate(items):
            high = _category(item) == user % N_CATEGORIES
            rating = rng.choice((4, 5) if high else (1, 2, 3))
            ts = start + 3600 * (n * N_USERS + user)  # interleaved, so a time cut has all
            rows.append(f"u{user + 1},m{item + 1},{rating},{ts}")
    (folder / "ratings.csv").write_text("user_id,item_id,rating,timestamp\n"
                                        + "\n".join(rows) + "\n")
    movies = [f"m{i + 1},{_title(i)}" for i in range(N_ITEMS)]
    (folder / "movies.csv").write_text("movie,name\n" + "\n".join(movies) + "\n")


WRITERS = {"sequence": write_sequence, "multi-behaviour": lambda f: write_pairs(f / "tmall"),
           "rating": write_ratings}
