"""core.diff: disagreement between two runs' routes, per layer and per POS (hand-computed cases)."""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.core.inspect.diff import disagreement_table, expert_set_differs
from moe_tui.errors import ReportError

# 4 tokens, 2 MoE layers (decoder layers 1 and 3), k = 2; POS: 0 0 1 2 with tags (A, B, C, D)
A = np.array([[[0, 1], [2, 3]],
              [[0, 1], [2, 3]],
              [[4, 5], [6, 7]],
              [[1, 0], [3, 2]]])
B = np.array([[[1, 0], [2, 3]],   # same set, other order at layer 1: not a set difference, but top-1 differs
              [[0, 2], [2, 3]],   # set differs at layer 1
              [[4, 5], [7, 6]],   # same set, top-1 differs at layer 3
              [[1, 0], [3, 5]]])  # set differs at layer 3
POS = np.array([0, 0, 1, 2])
TAGS = ("A", "B", "C", "D")


def test_set_difference_ignores_rank_order():
    assert expert_set_differs(A, B).tolist() == [[False, False], [True, False], [False, False], [False, True]]


def test_by_layer_hand_computed():
    t = disagreement_table(A, B, POS, by="layer", moe_layers=[1, 3], tags=TAGS)
    assert t["columns"] == ["layer", "token_layers", "differing_sets", "share_differing", "top1_differing",
                            "share_top1_differing"]
    assert t["rows"] == [[1, 4, 1, 0.25, 1, 0.25], [3, 4, 1, 0.25, 1, 0.25]]


def test_by_pos_hand_computed_and_absent_pos_left_out():
    t = disagreement_table(A, B, POS, by="pos", moe_layers=[1, 3], tags=TAGS)
    assert t["columns"][:2] == ["pos", "tokens"]
    assert t["rows"] == [["A", 2, 4, 1, 0.25, 1, 0.25],
                         ["B", 1, 2, 0, 0.0, 1, 0.5],
                         ["C", 1, 2, 1, 0.5, 0, 0.0]]


def test_unknown_grouping_is_one_line_error():
    with pytest.raises(ReportError, match="--by must be"):
        disagreement_table(A, B, POS, by="expert", moe_layers=[1, 3], tags=TAGS)
