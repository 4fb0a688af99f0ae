"""chess task: candidates checked against the raw Lichess rows with python-chess."""

from __future__ import annotations

import csv
import functools
import gzip
import json
import os
import random
from pathlib import Path

import chess
import pytest

from w2s_ray.tasks import DATA_DIR_ENV, load_task
from w2s_ray.tasks.chess import FILES, MATCH_LEVELS, choose_distractor, match_level, move_features
from w2s_ray.tasks.splits import column

DATA = Path(os.environ.get(DATA_DIR_ENV) or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="module")
def data_dir() -> str:
    assert DATA.is_dir(), f"real data dir not found at {DATA} (set {DATA_DIR_ENV})"
    return str(DATA)


@functools.cache
def raw_rows(stem: str) -> list[dict]:
    with gzip.open(DATA / f"{stem}.csv.gz", "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def parse(row: dict) -> tuple[chess.Board, chess.Move, chess.Move, str]:
    """(board after Moves[0], solution Moves[1], candidate from the text, candidate SAN)."""
    stem, idx = row["id"].rsplit(":", 1)
    rec = raw_rows(stem)[int(idx)]
    board = chess.Board(rec["FEN"])
    moves = rec["Moves"].split()
    board.push_uci(moves[0])
    fen_line, side_line, move_line = row["text"].split("\n")
    assert fen_line == f"FEN: {board.fen()}"
    assert row["group"] == " ".join(board.fen().split()[:4])  # the position, without move clocks
    assert side_line == f"Side to move: {'white' if board.turn else 'black'}"
    san = move_line.removeprefix("Move: ")
    candidate = board.parse_san(san)  # raises if the move is illegal or ambiguous
    return board, chess.Move.from_uci(moves[1]), candidate, san


def rows_of(ds) -> list[dict]:
    cols = ("id", "text", "label", "group")
    return [dict(zip(cols, r)) for r in zip(*(column(ds, c) for c in cols))]


def stats_of(ds) -> dict:
    return json.loads(ds.info.description)["stats"]


@pytest.fixture(scope="module")
def matched(data_dir):
    return load_task("chess", data_dir)


@pytest.fixture(scope="module")
def random_mode(data_dir):
    return load_task("chess", data_dir, {"distractors": "random"})


def test_deduplicated_by_fen_and_moves(matched):
    stems = [f.removesuffix(".csv.gz") for f in FILES]
    unique = {(r["FEN"], r["Moves"]) for s in stems for r in raw_rows(s)}
    assert sum(len(raw_rows(s)) for s in stems) > len(unique)  # the two files do overlap
    assert len(matched) + stats_of(matched).get("dropped_no_distractor", 0) == len(unique)
    keys = set()
    for row in rows_of(matched):
        stem, idx = row["id"].rsplit(":", 1)
        rec = raw_rows(stem)[int(idx)]
        keys.add((rec["FEN"], rec["Moves"]))
    assert len(keys) == len(matched)


@pytest.mark.parametrize("mode", ["matched", "random_mode"])
def test_positive_is_solution_and_negatives_are_legal_other_moves(mode, request):
    ds = request.getfixturevalue(mode)
    rows = rows_of(ds)
    frac = sum(r["label"] for r in rows) / len(rows)
    assert 0.45 < frac < 0.55, frac
    for row in rows:
        board, solution, candidate, _ = parse(row)
        if row["label"] == 1:
            assert candidate == solution
        else:
            assert candidate != solution and candidate in board.legal_moves
            board.push(candidate)
            assert not board.is_checkmate(), "a mating distractor could be a correct answer"


def feature_match_rates(ds) -> list[float]:
    """Per feature (capture, check, piece type, all three): share of negatives matching the solution."""
    hits, n = [0, 0, 0, 0], 0
    for row in rows_of(ds):
        if row["label"] == 0:
            board, solution, candidate, _ = parse(row)
            ft, fd = move_features(board, solution), move_features(board, candidate)
            hits = [h + m for h, m in zip(hits, [ft[0] == fd[0], ft[1] == fd[1], ft[2] == fd[2], ft == fd])]
            n += 1
    return [h / n for h in hits]


def test_matched_distractors_share_surface_features(matched, random_mode):
    m, r = feature_match_rates(matched), feature_match_rates(random_mode)
    assert all(x > 0.5 for x in m[:3]), m  # each feature matches in most cases
    assert all(x > y for x, y in zip(m, r)), (m, r)  # and far more often than random distractors


def test_matched_distractor_is_the_best_available_level(matched):
    negatives = [r for r in rows_of(matched) if r["label"] == 0]
    for row in random.Random(0).sample(negatives, 800):
        board, solution, candidate, _ = parse(row)
        target = move_features(board, solution)
        level = match_level(target, move_features(board, candidate))
        for other in board.legal_moves:
            if other == solution:
                continue
            board.push(other)
            mates = board.is_checkmate()
            board.pop()
            if not mates:
                assert match_level(target, move_features(board, other)) >= level


def test_fallback_counts_cover_every_puzzle(matched):
    stats = stats_of(matched)
    counts = [stats.get(f"distractor_match_{name}", 0) for name in MATCH_LEVELS]
    assert sum(counts) == len(matched)
    assert counts[0] > 0 and sum(counts[1:]) > 0  # the fallback is both needed and counted


def test_unmatched_drop_keeps_only_full_matches(data_dir, matched):
    strict = load_task("chess", data_dir, {"unmatched": "drop"})
    assert len(strict) == stats_of(matched)["distractor_match_capture+check+piece"]
    assert set(column(strict, "id")) < set(column(matched, "id"))
    for row in rows_of(strict)[:1500]:
        if row["label"] == 0:
            board, solution, candidate, _ = parse(row)
            assert move_features(board, candidate) == move_features(board, solution)


def test_alternative_mate_is_never_a_distractor():
    board = chess.Board("7k/6pp/8/8/8/8/8/RR4K1 w - - 0 1")  # Ra8# and Rb8# both mate
    solution = chess.Move.from_uci("a1a8")
    for seed in range(20):
        for mode in ("matched", "random"):
            move, _ = choose_distractor(board, solution, mode, random.Random(seed))
            assert move != chess.Move.from_uci("b1b8") and move != solution and move in board.legal_moves


def test_no_distractor_when_only_the_solution_is_legal():
    board = chess.Board("k7/8/8/8/8/8/1r6/K7 w - - 0 1")  # Kxb2 is the only legal move
    assert [m.uci() for m in board.legal_moves] == ["a1b2"]
    assert choose_distractor(board, chess.Move.from_uci("a1b2"), "matched", random.Random(0)) is None
