"""Result tables over seeds: mean ± std, and PGR over the seeds where it is defined."""

from __future__ import annotations

import math

import pytest

from w2s_ray.analysis.summary import fmt_pgr, format_runs, mean_std, summarize_runs

GAP_REASON = "ceiling − weak gap 0.01 < 0.02: PGR undefined"


def run(seed: int, pgr: float | None, student: float) -> dict:
    entry = {"weak_acc": 0.6, "student_acc": student, "ceiling_acc": 0.8, "student_weak_agreement": 0.9,
             "misfit_kl": 0.05, "pgr": pgr, "pgr_reason": None if pgr is not None else GAP_REASON}
    return {"task": "sst2", "weak_model": "w", "strong_model": "s", "loss": "xent", "seed": seed,
            "val": dict(entry), "test": dict(entry), "ood": {"imdb": dict(entry)}}


def test_mean_std_is_sample_std_and_skips_missing():
    assert mean_std([0.2, 0.4, 0.6]) == {"mean": pytest.approx(0.4), "std": pytest.approx(0.2), "n": 3}
    assert mean_std([0.5, None, float("nan")]) == {"mean": 0.5, "std": 0.0, "n": 1}
    empty = mean_std([])
    assert empty["n"] == 0 and math.isnan(empty["mean"])


def test_pgr_averages_defined_seeds_and_counts_undefined():
    runs = [run(0, 0.2, 0.64), run(1, None, 0.70), run(2, 0.4, 0.68), run(3, 0.6, 0.72)]
    summary = summarize_runs(runs)
    assert set(summary) == {"val", "test", "ood:imdb"}
    test = summary["test"]
    assert test["pgr"] == {"mean": pytest.approx(0.4), "std": pytest.approx(0.2), "n": 3}
    assert test["student_acc"]["mean"] == pytest.approx(0.685) and test["student_acc"]["n"] == 4
    assert test["pgr_undefined"] == 1 and test["pgr_reasons"] == [GAP_REASON]
    assert fmt_pgr(test, len(runs)) == "0.400 ± 0.200 (1/4 seeds undefined)"


def test_all_undefined_says_why_and_single_seed_has_no_std():
    undefined = summarize_runs([run(0, None, 0.6), run(1, None, 0.6)])["val"]
    assert fmt_pgr(undefined, 2) == f"undefined ({GAP_REASON})"
    single = summarize_runs([run(0, 0.5, 0.7)])
    assert fmt_pgr(single["val"], 1) == "0.500"
    table = format_runs([run(0, 0.5, 0.7)], single)
    assert table.splitlines()[0].startswith("task `sst2` · weak `w` → strong `s` · loss `xent`")
    assert "| test | 0.600 | 0.800 | 0.700 | 0.500 | 0.900 | 0.050 |" in table
    assert "| ood:imdb |" in table


def test_collate_puts_sections_that_predate_the_current_recipes_last_and_labelled(tmp_path):
    from w2s_ray.analysis.summary import LEGACY_HEADING, collate

    (tmp_path / "legacy").mkdir()
    old = tmp_path / "legacy" / "search-a-old.md"
    new = tmp_path / "search-z-new.md"
    old.write_text("old table\n")
    new.write_text("new table\n")
    text = collate([str(old), str(new)])
    assert text.index("### search-z-new") < text.index(LEGACY_HEADING) < text.index("### search-a-old")
    assert "### search-a-old (predates the current recipes)" in text
    assert "search-z-new (predates" not in text


def test_methods_table_pairs_each_method_with_soft_labels_by_seed(tmp_path):
    import json

    from w2s_ray.analysis.summary import methods_table

    def runs(method, pgrs):
        return [{"task": "sst2", "weak_model": "w", "strong_model": "s", "seed": seed,
                 "weak_labels": {"method": method}, "test": {"pgr": p, "student_acc": 0.8}}
                for seed, p in enumerate(pgrs)]

    for method, pgrs in (("soft", [0.5, 0.4, 0.6, 0.5, 0.45]), ("knn_relabel", [0.7, 0.5, 0.8, 0.6, 0.65]),
                         ("hard", [0.5, None, 0.6, 0.5, 0.45])):
        (tmp_path / f"{method}.json").write_text(json.dumps({"runs": runs(method, pgrs)}))
    table = methods_table(sorted(str(p) for p in tmp_path.glob("*.json")))
    rows = {line.split("|")[1].strip(): line
            for line in table.splitlines() if line.startswith("| ") and "---" not in line}
    assert list(rows)[1] == "soft"  # the reference row comes first, after the header
    knn = rows["knn_relabel"].split("|")
    assert knn[5].strip() == "+0.160 ± 0.024" and float(knn[6]) == pytest.approx(1 / 32, abs=5e-4)  # five wins of five
    hard = rows["hard"].split("|")
    assert hard[4].strip() == "1/5" and hard[5].strip().startswith("+0.000")  # paired over the 4 defined seeds


def test_run_table_lists_each_link_over_seeds_and_flags_one_below_the_weak_model():
    runs = [run(0, 0.5, 0.7), run(1, 0.5, 0.7)]
    for r, (first, second) in zip(runs, [(0.66, 0.55), (0.64, 0.57)]):
        r["links"] = [{"link": 1, "model": "m@L4", "chosen": {"lr": 1e-4}, "val_acc": first, "test_acc": first,
                       "labels_acc": first},
                      {"link": 2, "model": "m@L8", "chosen": {"lr": 5e-5}, "val_acc": second, "test_acc": second,
                       "labels_acc": second}]
    table = format_runs(runs, summarize_runs(runs))
    assert "| 1 | m@L4 |" in table and "0.650 ± 0.014" in table
    flags = [line for line in table.splitlines() if line.startswith("warning:")]
    assert flags == ["warning: bootstrap link 2 (m@L8) is below the weak model: val 0.560 < weak 0.600; "
                     "test 0.560 < weak 0.600"]
    assert "| link |" not in format_runs([run(0, 0.5, 0.7)], summarize_runs([run(0, 0.5, 0.7)]))
