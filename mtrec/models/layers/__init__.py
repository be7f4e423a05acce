"""Multi-task layers, one file each: per-task features from (user state, item, scenario)."""
