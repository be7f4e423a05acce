"""benchmarks/text_tuning.py: variants, the encoder's trainable parameters, the table."""

from __future__ import annotations

import pytest

from benchmarks.text_tuning import render, trainable, variant_settings


def test_variants_map_to_text_settings() -> None:
    assert variant_settings("frozen") == {"mode": "frozen"}
    assert variant_settings("lora-r4") == {"mode": "lora", "lora_r": 4, "lora_alpha": 8}
    with pytest.raises(SystemExit, match="unknown variant 'lora-rx'"):
        variant_settings("lora-rx")


def test_trainable_parameters_of_the_default_encoder() -> None:
    # all-MiniLM-L6-v2: 6 layers x (query, value) x r x (384 + 384)
    assert trainable(variant_settings("lora-r8")) == 6 * 2 * 8 * (384 + 384)
    assert trainable(variant_settings("frozen")) == 0


def test_the_table_has_a_line_per_finished_variant() -> None:
    row = {"dataset": "d", "variant": "lora-r8", "trainable_encoder_parameters": 73728,
           "ndcg@10": 0.05, "recall@10": 0.1, "cold_ndcg@10": 0.02, "seconds": 12.3,
           "peak_rss_gb": 3.21, "best_epoch": 4, "epochs": 9}
    lines = render([row, {"system": "pending", "kind": "pending"}]).splitlines()
    assert len(lines) == 3 and "| d | lora-r8 | 73,728 | 0.0500 |" in lines[2]
