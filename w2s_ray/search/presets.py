"""Named sizes for a search: data sizes, reference configs, trial budget and models."""

from __future__ import annotations

from dataclasses import dataclass, field

from w2s_ray.config import SplitSizes
from w2s_ray.errors import unknown_name

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"


@dataclass(frozen=True)
class Preset:
    """Everything a search needs besides the space: sizes, references and budget."""

    name: str
    description: str
    weak: str
    strong: str
    sizes: SplitSizes
    max_length: int
    batch_size: int
    num_samples: int
    weak_grid: list[dict] = field(default_factory=list)  # fair-reference candidates first (w2s_ray.search.budget)
    ceiling_grid: list[dict] = field(default_factory=list)
    reference_epochs: int = 2
    reference_budget: int | None = None  # configurations per reference (None: the student's trials, see budget.py)
    use_gpu: bool = False
    val_labels: int | None = None
    ladder: tuple[str, ...] | None = None  # overrides the space file's bootstrap ladder
    pairwise_sizes: SplitSizes | None = None  # pairwise tasks train on two texts per example
    train: dict = field(default_factory=dict)  # TrainConfig fields for every role (e.g. mode: probe)
    space: str | None = None  # default space search_spaces/<space>_<kind>.yaml instead of the task's own
    confirm_seeds: int = 0  # default --confirm-seeds
    pairwise_max_length: int | None = None  # pairs of long texts (HH transcripts) get their own budget
    weak_as_ladder: bool = False  # every bootstrap link is the weak model (tiny smoke presets)
    max_concurrent: int = 1  # default --max-concurrent; 0 = one trial per CPU of the driver's machine
    # per Train worker on a cluster (--address / a Ray job) unless --cpus-per-worker / --gpus-per-worker say
    # otherwise; a local run sizes CPUs from its own node
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0

    def sizes_for(self, kind: str) -> SplitSizes:
        """Split sizes for a task kind (``classify`` or ``pairwise``)."""
        return self.pairwise_sizes if kind == "pairwise" and self.pairwise_sizes is not None else self.sizes

    def max_length_for(self, kind: str) -> int:
        """Token budget per text for a task kind."""
        return self.pairwise_max_length if kind == "pairwise" and self.pairwise_max_length else self.max_length


def probe_grid(layers: range, weight_decays: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0)) -> list[dict]:
    """Reference candidates for probes: every layer x L2 strength (each fit is sub-second)."""
    return [{"layer": layer, "weight_decay": wd} for layer in layers for wd in weight_decays]


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            name="probe",
            description="probes on cached frozen activations, MiniLM weak → all-mpnet-base-v2 strong; "
                        "100 trials + 5 confirmation seeds, minutes on 2 CPU cores (default without GPUs)",
            weak=MINILM, strong=MPNET,
            sizes=SplitSizes(a=1000, b=1000, val=400, test=1000), max_length=128, batch_size=64, num_samples=100,
            pairwise_sizes=SplitSizes(a=600, b=600, val=200, test=500), pairwise_max_length=128,
            train={"mode": "probe", "lr": 1e-2, "weight_decay": 1e-2},
            weak_grid=probe_grid(range(1, 7)), ceiling_grid=probe_grid(range(1, 13)),
            reference_epochs=20, ladder=(f"{MPNET}@L4", f"{MPNET}@L8"),
            space="probe", confirm_seeds=5, max_concurrent=0,  # probe trials hold a CPU each
        ),
        Preset(
            name="quick",
            description="offline MiniLM ladder (@L1 weak → 6 layers strong); ~15 min on 2 CPU cores",
            weak=f"{MINILM}@L1", strong=MINILM,
            sizes=SplitSizes(a=600, b=600, val=300, test=500), max_length=64, batch_size=32, num_samples=6,
            pairwise_sizes=SplitSizes(a=300, b=300, val=200, test=400),
            weak_grid=[{"lr": 2e-4}, {"lr": 5e-4}], ceiling_grid=[{"lr": 5e-5}, {"lr": 1e-4}],
        ),
        Preset(
            name="mpnet",
            description="offline MiniLM (6 layers) weak → all-mpnet-base-v2 strong; about an hour on 2 CPU cores",
            weak=MINILM, strong=MPNET,
            sizes=SplitSizes(a=1000, b=1000, val=400, test=1000), max_length=64, batch_size=32, num_samples=6,
            weak_grid=[{"lr": 5e-5}, {"lr": 1e-4}], ceiling_grid=[{"lr": 2e-5}, {"lr": 3e-5}],
            ladder=(f"{MPNET}@L4", f"{MPNET}@L8"),
        ),
        Preset(
            name="paper",
            description="paper scale on GPU clusters: GPT-2 ladder from the hub (gpt2 → gpt2-xl)",
            weak="gpt2", strong="gpt2-xl",
            sizes=SplitSizes(a=10000, b=10000, val=2000, test=5000), max_length=512, batch_size=32,
            num_samples=64, weak_grid=[{"lr": 5e-5}, {"lr": 1e-4}],
            ceiling_grid=[{"lr": 1e-5}, {"lr": 3e-5}], use_gpu=True,
            ladder=("gpt2-medium", "gpt2-large"),
            cpus_per_worker=6.0,  # + the trial's own process: fits an 8-vCPU GPU VM and a 7-CPU KubeRay pod
        ),
        Preset(
            name="tiny",
            description="random tiny models for tests and smoke runs only: never a result",
            weak="tiny-bert", strong="tiny-bert",
            sizes=SplitSizes(a=48, b=48, val=32, test=32), max_length=32, batch_size=16, num_samples=3,
            weak_grid=[{"lr": 1e-3}], ceiling_grid=[{"lr": 1e-3}], reference_epochs=1,
            reference_budget=1,  # a smoke preset: one candidate per reference keeps its tests cheap
            weak_as_ladder=True,
        ),
        Preset(
            name="tiny-probe",
            description="random tiny models, probes on cached activations: tests and smoke runs only, never a result",
            weak="tiny-bert", strong="tiny-bert",
            sizes=SplitSizes(a=48, b=48, val=32, test=32), max_length=32, batch_size=16, num_samples=4,
            train={"mode": "probe", "lr": 1e-2}, weak_grid=probe_grid(range(1, 3), (1e-2, 1e-1)),
            ceiling_grid=probe_grid(range(1, 3), (1e-2, 1e-1)), reference_epochs=5,
            weak_as_ladder=True,
        ),
    ]
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise unknown_name("preset", name, PRESETS)
    return PRESETS[name]
