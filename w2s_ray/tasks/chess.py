"""`chess`: is this candidate move the solution of the Lichess puzzle?

Lichess format: FEN is the position *before* the opponent's move Moves[0]; the solver's first
move is Moves[1]. For each puzzle (both csv.gz files pooled, deduplicated by FEN+Moves) we play
Moves[0] and show the resulting board as FEN plus the side to move, and one candidate move in
SAN. A coin flip from the puzzle's seeded RNG decides the row: the solution Moves[1] (label 1) or
one distractor (label 0). One row per puzzle; its `group` is the shown position (FEN without
move clocks), so puzzles reaching the same position stay in one split (none do in the local
files). The labels are balanced in expectation here and
exactly in every split by `splits.py` (which has ~7k puzzles of each label to choose from).

Distractors (option `distractors`):
  matched (default): a legal move that shares with the solution, in order of preference,
      capture-or-not, gives-check-or-not and moving piece type (level 0). Fallbacks, used only
      when no move matches at a level: capture+check (1), capture (2), any legal move (3).
      How often each level was used is in `ds.info.description` ("stats"). On the local data
      only ~44% of puzzles have a level-0 distractor (most solutions are checks, and few other
      checks use the same piece), so fallback rows keep some surface signal. Option (matched only)
      `unmatched="drop"` drops puzzles without a level-0 distractor instead (about 6.5k of
      14.7k remain), which makes capture/check/piece type carry no signal at all.
  random: a uniformly random other legal move.
Distractors never deliver checkmate: Lichess accepts any mating move, so a mating distractor
could be a correct answer labelled 0. A puzzle without a usable distractor is dropped (whatever
its label, so dropping does not bias the labels).

The distractor choice decides what the task measures: random distractors can largely be told
apart by surface features (captures, checks); matched ones are meant to remove that shortcut.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import chess

from w2s_ray.errors import UserError
from w2s_ray.tasks.base import RecordTask, choice_option, group_key
from w2s_ray.tasks.hub import HubSource
from w2s_ray.tasks.local import Record
from w2s_ray.tasks.registry import register

DISTRACTOR_MODES: tuple[str, ...] = ("matched", "random")
UNMATCHED_MODES: tuple[str, ...] = ("fallback", "drop")
MATCH_LEVELS: tuple[str, ...] = ("capture+check+piece", "capture+check", "capture", "any")
FILES: tuple[str, ...] = (
    "lichess_puzzles/lichess_puzzles_merged.csv.gz",
    "lichess_puzzles/lichess_first10k_fen_moves_rating.csv.gz",
)

Features = tuple[bool, bool, int]


def move_features(board: chess.Board, move: chess.Move) -> Features:
    """(is a capture, gives check, moving piece type) of a legal move."""
    piece = board.piece_type_at(move.from_square)
    return board.is_capture(move), board.gives_check(move), int(piece or 0)


def match_level(target: Features, feats: Features) -> int:
    """0 = all three features match ... 3 = no match required (see MATCH_LEVELS)."""
    if feats == target:
        return 0
    if feats[:2] == target[:2]:
        return 1
    if feats[0] == target[0]:
        return 2
    return 3


def _mates(board: chess.Board, move: chess.Move) -> bool:
    if not board.gives_check(move):
        return False
    board.push(move)
    try:
        return board.is_checkmate()
    finally:
        board.pop()


def choose_distractor(board: chess.Board, solution: chess.Move, mode: str,
                      rng: random.Random) -> tuple[chess.Move, int] | None:
    """(distractor, match level) or None if no legal non-mating move other than the solution exists.

    `random` mode reports level -1. `matched` scans the legal moves in seeded random order and
    keeps the first one at the best level found, stopping early at level 0.
    """
    moves = sorted((m for m in board.legal_moves if m != solution), key=lambda m: m.uci())
    rng.shuffle(moves)
    if mode == "random":
        return next(((m, -1) for m in moves if not _mates(board, m)), None)
    target = move_features(board, solution)
    best: tuple[chess.Move, int] | None = None
    for m in moves:
        level = match_level(target, move_features(board, m))
        if (best is None or level < best[1]) and not _mates(board, m):
            best = (m, level)
            if level == 0:
                break
    return best


def puzzle_position(fen: str, moves: str, source: str) -> tuple[chess.Board, chess.Move]:
    """The board after the opponent's move Moves[0], and the solution Moves[1]."""
    try:
        board = chess.Board(fen)
        uci = moves.split()
        if len(uci) < 2:
            raise ValueError("Moves needs at least 2 moves")
        board.push(board.parse_uci(uci[0]))
        return board, board.parse_uci(uci[1])
    except ValueError as exc:
        raise UserError(f"invalid puzzle in {source}: FEN {fen!r} Moves {moves!r} ({exc})") from None


def position(board: chess.Board) -> str:
    """The position a row asks about: FEN without the move clocks."""
    return " ".join(board.fen().split()[:4])


def render(board: chess.Board, move: chess.Move) -> str:
    """The text a model sees: position as FEN, side to move, candidate move in SAN."""
    side = "white" if board.turn == chess.WHITE else "black"
    return f"FEN: {board.fen()}\nSide to move: {side}\nMove: {board.san(move)}"


@register
class ChessTask(RecordTask):
    name = "chess"
    kind = "classify"
    label_meaning = "chess_solution_move"
    description = "Lichess puzzle position + candidate move (SAN); label 1 = it is the solution Moves[1]"
    options: dict[str, Any] = {"distractors": "matched", "unmatched": "fallback"}  # noqa: RUF012 (a default; SpecTask sets its own)
    files = FILES
    # The hub dataset has ~5M puzzles; stream the first 50k.
    hub = (HubSource("Lichess/chess-puzzles", splits=("train",), limit=50_000),)
    required = ("FEN", "Moves")

    def check_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {
            **options,
            "distractors": choice_option(self.name, "distractors", options["distractors"], DISTRACTOR_MODES),
            "unmatched": choice_option(self.name, "unmatched", options["unmatched"], UNMATCHED_MODES),
        }

    def records(self, data_dir: str | None, options: dict[str, Any]) -> Iterator[tuple[str, str, Record]]:
        """Puzzles deduplicated by (FEN, Moves), first occurrence kept (merged file first)."""
        seen: set[tuple[str, str]] = set()
        for row_id, source, rec in super().records(data_dir, options):
            key = (str(rec["FEN"]).strip(), " ".join(str(rec["Moves"]).split()))
            if key not in seen:
                seen.add(key)
                yield row_id, source, rec

    def format(self, rec: Record, rng: random.Random, options: dict[str, Any], source: str,
               stats: Counter[str]) -> dict[str, Any] | None:
        board, solution = puzzle_position(str(rec["FEN"]), str(rec["Moves"]), source)
        label = int(rng.random() < 0.5)
        picked = choose_distractor(board, solution, options["distractors"], rng)
        if picked is None:
            stats["dropped_no_distractor"] += 1
            return None
        distractor, level = picked
        if level >= 0:  # computed for every puzzle, so these counts do not depend on the labels
            stats[f"distractor_match_{MATCH_LEVELS[level]}"] += 1
            if level > 0 and options["unmatched"] == "drop":
                stats["dropped_unmatched"] += 1
                return None
        return {"text": render(board, solution if label else distractor), "label": label,
                "group": group_key(position(board))}
