"""Dataset statistics straight from a store."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mtrec.data.reader import reason_category
from mtrec.data.store import Store


def dataset_stats(store: Store) -> dict[str, Any]:
    """Counts a user checks first: users, items, interactions, per behaviour and split.

    ``users`` and ``items`` count the canonical tables (a dataset may declare ids with no
    events, as JData does); ``active_users``/``active_items`` count those with events.
    """
    q = store.query
    interactions = store.count("events")
    users, items = store.count("users"), store.count("items")
    active = q("SELECT count(DISTINCT user_id), count(DISTINCT item_id), "
               "min(ts), max(ts), count(ts) FROM events")[0]
    by_behavior = dict(q("SELECT behavior, count(*) FROM events GROUP BY 1 ORDER BY 1"))
    by_split = dict(q("SELECT coalesce(source_split, 'none'), count(*) FROM events "
                      "GROUP BY 1 ORDER BY 1"))
    by_scenario = dict(q("SELECT scenario, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC "
                         "LIMIT 20"))
    with_text = q("SELECT count(*) FROM items WHERE coalesce(trim(text), '') <> '' "
                  "OR coalesce(trim(title), '') <> ''")[0][0]  # the model reads either
    reasons = Counter(reason_category(r) for (r,) in q("SELECT reason FROM quarantine"))
    quarantined = dict(reasons.most_common())
    imported = store.get_meta("import", {})
    return {
        "dataset": imported.get("dataset"),
        "users": users,
        "items": items,
        "interactions": interactions,
        "active_users": int(active[0]),
        "active_items": int(active[1]),
        "density": interactions / (users * items) if users and items else 0.0,
        "events_by_behavior": by_behavior,
        "events_by_source_split": by_split,
        "events_by_scenario": by_scenario,
        "items_with_text": int(with_text),
        "timestamps": {"with_ts": int(active[4]), "first": _iso(active[2]),
                       "last": _iso(active[3])},
        "rows_dropped": sum(quarantined.values()),
        "rows_dropped_by_reason": quarantined,
        "notes": imported.get("notes", []),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
