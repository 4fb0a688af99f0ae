"""Fair tuning budgets: each reference is selected from as many configurations as the student."""

from __future__ import annotations

from pathlib import Path

from w2s_ray.search.budget import FINETUNE_CAP, reference_budget, reference_candidates
from w2s_ray.search.space import load_space

SPACES = Path(__file__).resolve().parents[1] / "search_spaces"


def test_default_budget_is_the_students_trials_capped_for_finetuning():
    assert reference_budget(100, "probe") == 100  # probes are cheap: no cap
    assert reference_budget(100, "finetune") == FINETUNE_CAP == 8
    assert reference_budget(3, "finetune") == 3
    assert reference_budget(100, "probe", override=5) == 5


def test_candidates_fill_the_budget_over_the_shared_knobs():
    space = load_space(SPACES / "probe_classify.yaml", "classify")
    grid = [{"layer": 1, "weight_decay": 0.1}, {"layer": 2, "weight_decay": 1.0}]
    weak = reference_candidates(grid, space, 20, seed=0, mode="probe", depth=6, strong_depth=12, role="weak")
    assert len(weak) == 20 and weak[:2] == grid  # the preset's grid first, then samples
    assert len({tuple(sorted(c.items())) for c in weak}) == 20
    for c in weak[2:]:
        assert set(c) == {"lr", "epochs", "weight_decay", "layer"}  # the knobs probes share with the student
        assert 0 <= c["layer"] <= 6  # the space's strong-model layers (4..12) rescaled to the weak depth
        assert space.params["lr"].contains(c["lr"]) and space.params["epochs"].contains(c["epochs"])
    again = reference_candidates(grid, space, 20, seed=0, mode="probe", depth=6, strong_depth=12, role="weak")
    assert again == weak  # seeded
    small = reference_candidates(grid, space, 1, seed=0, mode="probe", depth=6, strong_depth=12, role="weak")
    assert len(small) == 1 and small[0] in grid  # a budget below the grid subsamples it
    finetune = reference_candidates([], load_space(SPACES / "default_classify.yaml", "classify"), 4, seed=0,
                                    mode="finetune", depth=6, strong_depth=6, role="ceiling")
    assert len(finetune) == 4 and all(set(c) == {"lr", "epochs"} for c in finetune)


def test_summary_states_budgets_and_flags_a_link_below_the_weak_model():
    from w2s_ray.search.outputs import budget_lines

    refs = {"budgets": {"student": 100, "weak": 100, "ceiling": 100, "bootstrap_link": 15},
            "weak": {"model": "w", "val_acc": 0.70, "test_acc": 0.68},
            "bootstrap": [{"link": 1, "model": "m@L4", "chosen": {"lr": 0.01}, "folds": 2, "budget": 15,
                           "val_acc": 0.72, "test_acc": 0.71, "labels_acc": 0.7},
                          {"link": 2, "model": "m@L8", "chosen": {"lr": 0.02}, "folds": 2, "budget": 15,
                           "val_acc": 0.65, "test_acc": 0.69, "labels_acc": 0.6}]}
    text = "\n".join(budget_lines(refs))
    assert "student 100 · weak 100 · ceiling 100 · bootstrap_link 15" in text
    assert "| 2 | m@L8 |" in text and "0.650" in text
    assert "bootstrap link 2 (m@L8) is below the weak model: val 0.650 < weak 0.700" in text
    assert "bootstrap link 1" not in text
