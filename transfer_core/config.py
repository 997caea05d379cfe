"""Configuration: one frozen, validated dataclass per concept, plus settings.

Every dataclass validates itself in ``__post_init__`` and raises
``ValueError("... Received: name=value")`` so that a bad setting is reported
before any work starts. Dataclasses round-trip through plain dicts
(``to_dict`` / ``from_dict``) so a run's ``config.json`` fully describes it.

This module must stay cheap to import: no TensorFlow, no Streamlit.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transfer_core import strategies as _strategies

STRATEGIES = _strategies.NAMES  # Declared with their labels and colours in transfer_core.strategies.
FREEZE_MODES = ("all_frozen", "top_blocks", "from_layer", "all_trainable", "custom")
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
AUGMENTATIONS = ("flip", "rotate", "zoom", "contrast")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")
DISTRIBUTIONS = ("none", "mirrored")
WEIGHTS_CHOICES = ("imagenet", "random")
# How the head reads the backbone's last feature map: global average pooling, global max pooling, or
# Flatten (every position its own weights: the classic Keras recipe).
HEAD_POOLINGS = ("avg", "max", "flatten")


def _fail(message: str, **received: Any) -> None:
    shown = ", ".join(f"{name}={value!r}" for name, value in received.items())
    raise ValueError(f"{message} Received: {shown}")


def _as_tuple(value: Any) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


class _DictMixin:
    """Round-trip a frozen dataclass through JSON-friendly dicts."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, _DictMixin):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - known
        if unknown:
            _fail(f"Unknown {cls.__name__} fields {sorted(unknown)}.", data=data)
        return cls(**data)


@dataclass(frozen=True)
class DatasetSpec(_DictMixin):
    """A labelled image set on disk: one folder per class plus ``manifest.csv``.

    Args:
        root: Folder that holds ``manifest.csv`` and the images it lists
            (paths in the manifest are relative to ``root``).
        class_names: Class labels in index order (the model's output order).
        seed: Seed of the train/validation split.
        val_fraction: Share of each class kept for validation when the source
            had no split of its own.
        test_fraction: Share of each class kept for a held-out test split.
        version: Which version of the data set (1 = as ingested). Fixing the data
            (relabel, remove, add a photo, undo, a new split) makes a new version
            with its own manifest; older versions, and the runs made on them,
            stay as they were (``transfer_core.data.versions``).
    """

    root: str
    class_names: tuple[str, ...]
    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    version: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", str(self.root))
        object.__setattr__(self, "class_names", _as_tuple(self.class_names))
        if len(self.class_names) < 2:
            _fail("A data set needs at least 2 classes.", class_names=self.class_names)
        if len(set(self.class_names)) != len(self.class_names):
            _fail("Class names must be unique.", class_names=self.class_names)
        if not 0.0 < self.val_fraction < 1.0:
            _fail("val_fraction must be between 0 and 1.", val_fraction=self.val_fraction)
        if not 0.0 <= self.test_fraction < 1.0 - self.val_fraction:
            _fail(
                "test_fraction must be >= 0 and leave room for training.",
                test_fraction=self.test_fraction,
            )
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            _fail("version must be an integer >= 1.", version=self.version)

    @property
    def manifest_path(self) -> Path:
        """This version's manifest: ``manifest.csv`` for version 1, ``versions/<n>/manifest.csv`` after."""
        if self.version == 1:
            return Path(self.root) / "manifest.csv"
        return Path(self.root) / "versions" / str(self.version) / "manifest.csv"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass(frozen=True)
class ModelSpec(_DictMixin):
    """Which pretrained backbone, at which input size, with which head.

    Args:
        backbone: Key in the zoo, e.g. ``"mobilenet_v2_0.35"``.
        input_size: Square input side in pixels; ``0`` means the backbone's default.
        weights: ``"imagenet"`` (pretrained, resolved offline first) or
            ``"random"`` (no transfer; the from-scratch baseline).
        dropout_rate: Dropout before the classifier.
        hidden_units: Width of an optional hidden Dense layer in the head (0 = none).
        head: How the head reads the backbone's feature map: ``"avg"`` (global average
            pooling, the default), ``"max"`` (global max pooling) or ``"flatten"``
            (``Flatten``: one weight per position and channel, the classic Keras recipe).
    """

    backbone: str = "mobilenet_v2_0.35"
    input_size: int = 0
    weights: str = "imagenet"
    dropout_rate: float = 0.2
    hidden_units: int = 0
    head: str = "avg"

    def __post_init__(self) -> None:
        if self.head not in HEAD_POOLINGS:
            _fail(f"head must be one of {HEAD_POOLINGS}.", head=self.head)
        if not self.backbone:
            _fail("backbone must be a zoo key.", backbone=self.backbone)
        if self.input_size != 0 and not 32 <= self.input_size <= 1024:
            _fail("input_size must be 0 (default) or 32..1024 pixels.", input_size=self.input_size)
        if self.weights not in WEIGHTS_CHOICES:
            _fail(f"weights must be one of {WEIGHTS_CHOICES}.", weights=self.weights)
        if not 0.0 <= self.dropout_rate < 1.0:
            _fail("dropout_rate must be in [0, 1).", dropout_rate=self.dropout_rate)
        if not 0 <= self.hidden_units <= 4096:
            _fail("hidden_units must be in 0..4096.", hidden_units=self.hidden_units)


@dataclass(frozen=True)
class FreezePlan(_DictMixin):
    """Which parts of the backbone train during fine-tuning.

    Args:
        mode: ``all_frozen`` (feature extraction), ``top_blocks`` (the last
            ``top_blocks`` blocks train), ``from_layer`` (layers with index >=
            ``from_layer`` train), ``all_trainable``, or ``custom`` (the blocks
            named in ``trainable_blocks`` train).
        top_blocks: Number of top blocks to train for ``top_blocks`` mode.
        from_layer: First trainable layer index for ``from_layer`` mode.
        trainable_blocks: Block names for ``custom`` mode.
        train_batchnorm: Let BatchNormalization layers update their statistics
            (the "BatchNorm pitfall"; the Keras recipe keeps this False).
    """

    mode: str = "top_blocks"
    top_blocks: int = 2
    from_layer: int = 0
    trainable_blocks: tuple[str, ...] = ()
    train_batchnorm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "trainable_blocks", _as_tuple(self.trainable_blocks))
        if self.mode not in FREEZE_MODES:
            _fail(f"mode must be one of {FREEZE_MODES}.", mode=self.mode)
        if self.top_blocks < 0:
            _fail("top_blocks must be >= 0.", top_blocks=self.top_blocks)
        if self.from_layer < 0:
            _fail("from_layer must be >= 0.", from_layer=self.from_layer)
        if self.mode == "top_blocks" and self.top_blocks == 0:
            _fail("top_blocks mode needs top_blocks >= 1.", top_blocks=self.top_blocks)


@dataclass(frozen=True)
class TrainConfig(_DictMixin):
    """How to train.

    Args:
        strategy: ``feature_extraction``, ``fine_tuning`` or ``from_scratch``.
        epochs: Epochs of head training (feature extraction, stage 1 of
            fine-tuning) or of the whole network (from scratch).
        fine_tune_epochs: Epochs of stage 2 of fine-tuning (unfrozen blocks).
        batch_size: Images per batch.
        learning_rate: Learning rate of the head (and of from-scratch training).
        fine_tune_learning_rate: Lower learning rate of stage 2 of fine-tuning.
        optimizer: ``adam``, ``sgd``, ``rmsprop`` or ``adamw``.
        augmentation: Any of ``flip``, ``rotate``, ``zoom``, ``contrast``.
            Augmentation turns feature caching off (the images change every epoch).
        early_stopping_patience: Stop after this many epochs without a better
            validation loss (0 = never stop early).
        seed: Seed of weight initialisation, shuffling and augmentation.
        class_weights: Weight the loss by inverse class frequency.
        use_cache: Cache backbone features on disk when augmentation is off.
        precision: ``float32``; ``mixed_bfloat16`` / ``mixed_float16`` compute in
            16 bits with float32 weights; ``auto`` picks ``mixed_float16`` on a GPU
            and ``float32`` on a CPU (see BENCHMARKS.md for why).
        distribution: ``none`` or ``mirrored`` (``tf.distribute.MirroredStrategy``
            over every visible GPU, or the CPU when there is none).
        time_budget_seconds: End the epoch (and the run) within one batch once this much training
            time (the sum of epoch times) is used; the run still finishes. None: no budget.
        time_budget_from: A run directory whose training time becomes the budget, read when
            this run starts (a comparison's from-scratch run gets fine-tuning's). Empty: none.
    """

    strategy: str = "feature_extraction"
    epochs: int = 10
    fine_tune_epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    optimizer: str = "adam"
    augmentation: tuple[str, ...] = ()
    early_stopping_patience: int = 0
    seed: int = 0
    class_weights: bool = False
    use_cache: bool = True
    precision: str = "float32"
    distribution: str = "none"
    time_budget_seconds: float | None = None
    time_budget_from: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "augmentation", _as_tuple(self.augmentation))
        if self.time_budget_seconds is not None and not 0 < self.time_budget_seconds <= 7 * 24 * 3600:
            _fail("time_budget_seconds must be > 0 (and at most a week), or None.",
                  time_budget_seconds=self.time_budget_seconds)
        if self.precision not in PRECISIONS:
            _fail(f"precision must be one of {PRECISIONS}.", precision=self.precision)
        if self.distribution not in DISTRIBUTIONS:
            _fail(f"distribution must be one of {DISTRIBUTIONS}.", distribution=self.distribution)
        if self.strategy not in STRATEGIES:
            _fail(f"strategy must be one of {STRATEGIES}.", strategy=self.strategy)
        if not 1 <= self.epochs <= 1000:
            _fail("epochs must be between 1 and 1000.", epochs=self.epochs)
        if not 0 <= self.fine_tune_epochs <= 1000:
            _fail("fine_tune_epochs must be between 0 and 1000.", fine_tune_epochs=self.fine_tune_epochs)
        if self.strategy == "fine_tuning" and self.fine_tune_epochs == 0:
            _fail("fine_tuning needs fine_tune_epochs >= 1.", fine_tune_epochs=self.fine_tune_epochs)
        if not 1 <= self.batch_size <= 4096:
            _fail("batch_size must be between 1 and 4096.", batch_size=self.batch_size)
        for name in ("learning_rate", "fine_tune_learning_rate"):
            value = getattr(self, name)
            if not 0.0 < value <= 10.0:
                _fail(f"{name} must be > 0 and <= 10.", **{name: value})
        if self.optimizer not in OPTIMIZERS:
            _fail(f"optimizer must be one of {OPTIMIZERS}.", optimizer=self.optimizer)
        unknown = [a for a in self.augmentation if a not in AUGMENTATIONS]
        if unknown:
            _fail(f"augmentation must be among {AUGMENTATIONS}.", augmentation=self.augmentation)
        if self.early_stopping_patience < 0:
            _fail("early_stopping_patience must be >= 0.", early_stopping_patience=self.early_stopping_patience)

    @property
    def caches_features(self) -> bool:
        """Whether backbone features can be computed once and reused."""
        return self.use_cache and not self.augmentation


@dataclass(frozen=True)
class RunConfig(_DictMixin):
    """Everything that defines one training run."""

    dataset: DatasetSpec
    model: ModelSpec = field(default_factory=ModelSpec)
    freeze: FreezePlan = field(default_factory=FreezePlan)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = ""

    def __post_init__(self) -> None:
        for attr, cls in (
            ("dataset", DatasetSpec),
            ("model", ModelSpec),
            ("freeze", FreezePlan),
            ("train", TrainConfig),
        ):
            value = getattr(self, attr)
            if isinstance(value, dict):
                object.__setattr__(self, attr, cls.from_dict(value))
            elif not isinstance(value, cls):
                _fail(f"{attr} must be a {cls.__name__}.", **{attr: value})
        if self.train.strategy == "from_scratch" and self.model.weights != "random":
            # Stored as given (never rewritten): the caller chooses random weights explicitly.
            _fail(
                'strategy "from_scratch" means no transfer: it needs ModelSpec(weights="random").',
                weights=self.model.weights,
            )
        if len(self.name) > 200:
            _fail("name must be at most 200 characters.", name=self.name)


def _env_path(name: str, default: Path | None) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else default


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"Environment variable {name} must be an integer. Received: {name}={value!r}") from None


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"Environment variable {name} must be a number. Received: {name}={value!r}") from None


EXECUTORS = ("local", "ray")
# Where frozen forward passes run (ARCHITECTURE.md, decision 12): "litert" converts the frozen network
# once and runs it with LiteRT + XNNPACK (TensorFlow when it cannot), "tensorflow" always uses TensorFlow.
FROZEN_RUNTIMES = ("litert", "tensorflow")


def _env_paths(name: str, default: tuple[Path, ...]) -> tuple[Path, ...]:
    value = os.environ.get(name, "").strip()
    return tuple(Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()) if value else default


def _env_str(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"Environment variable {name} must be 1 or 0 (true/false). Received: {name}={value!r}")


# The environment variable and reader of each Settings field (Settings.from_env); the defaults are the fields' own.
SETTING_VARIABLES = {
    "home": ("TRANSFER_HOME", _env_path),
    "weights_dir": ("TRANSFER_WEIGHTS_DIR", _env_path),
    "max_concurrent_runs": ("TRANSFER_MAX_CONCURRENT_RUNS", _env_int),
    "max_upload_mb": ("TRANSFER_MAX_UPLOAD_MB", _env_int),
    "max_files": ("TRANSFER_MAX_FILES", _env_int),
    "max_pixels": ("TRANSFER_MAX_PIXELS", _env_int),
    "max_session_disk_mb": ("TRANSFER_MAX_SESSION_DISK_MB", _env_int),
    "allowed_data_dirs": ("TRANSFER_ALLOWED_DATA_DIRS", _env_paths),
    "standby_worker": ("TRANSFER_STANDBY_WORKER", _env_bool),
    "executor": ("TRANSFER_EXECUTOR", _env_str),
    "ray_address": ("RAY_ADDRESS", _env_str),
    "ray_num_cpus": ("TRANSFER_RAY_NUM_CPUS", _env_float),
    "ray_num_gpus": ("TRANSFER_RAY_NUM_GPUS", _env_float),
    "max_queued_per_session": ("TRANSFER_MAX_QUEUED_PER_SESSION", _env_int),
    "worker_nice": ("TRANSFER_WORKER_NICE", _env_int),
    "worker_max_runs": ("TRANSFER_WORKER_MAX_RUNS", _env_int),
    "worker_max_memory_mb": ("TRANSFER_WORKER_MAX_MEMORY_MB", _env_int),
    "teacher_token": ("TRANSFER_TEACHER_TOKEN", _env_str),
    "demo_dir": ("TRANSFER_DEMO_DIR", _env_path),
    "offline": ("TRANSFER_OFFLINE", _env_bool),
    "frozen_runtime": ("TRANSFER_FROZEN_RUNTIME", _env_str),
}


@dataclass(frozen=True)
class Settings(_DictMixin):
    """Operator settings, read from environment variables (see README).

    Args:
        home: Root of workspaces (uploaded data) and runs. ``TRANSFER_HOME``.
        weights_dir: Offline ImageNet weights folder. ``TRANSFER_WEIGHTS_DIR``.
        max_concurrent_runs: Runs that train at once; more wait in a queue.
            ``TRANSFER_MAX_CONCURRENT_RUNS``.
        max_upload_mb: Largest upload or ZIP accepted. ``TRANSFER_MAX_UPLOAD_MB``.
        max_files: Most images accepted in one data set. ``TRANSFER_MAX_FILES``.
        max_pixels: Largest image (width x height) decoded. ``TRANSFER_MAX_PIXELS``.
        max_session_disk_mb: Disk one browser session may fill. ``TRANSFER_MAX_SESSION_DISK_MB``.
        allowed_data_dirs: Server folders the app may read data from
            (``os.pathsep``-separated). ``TRANSFER_ALLOWED_DATA_DIRS``.
        standby_worker: Keep one worker process with TensorFlow already imported,
            waiting for the next run (saves the ~3 s import on every run; costs an idle
            process of ~0.65 GB resident). ``TRANSFER_STANDBY_WORKER``; on by default only in the app,
            a long-lived server (see ``from_env``).
        executor: Where runs train: ``"local"`` (worker processes on this machine) or ``"ray"``
            (each run a task on the Ray cluster at ``ray_address``). ``TRANSFER_EXECUTOR``.
        ray_address: The Ray cluster to submit runs to (``"auto"``, ``"host:6379"``). ``RAY_ADDRESS``.
        ray_num_cpus: CPUs one run reserves on the Ray cluster. ``TRANSFER_RAY_NUM_CPUS``.
        ray_num_gpus: GPUs one run reserves on the Ray cluster. ``TRANSFER_RAY_NUM_GPUS``.
        max_queued_per_session: Requests one session may have waiting (not yet training) at once;
            a comparison counts as one. ``TRANSFER_MAX_QUEUED_PER_SESSION``.
        worker_nice: The nice value (0-19) training workers run at, so that on a shared machine the
            web server and the browsers get the cores first and pages stay quick while runs train; on
            an idle machine it costs nothing. 0 keeps the server's priority. ``TRANSFER_WORKER_NICE``.
        worker_max_runs: Runs one warm worker process trains before it retires and a fresh process
            takes over (Keras state is reset between runs; retiring bounds what a leak could grow to).
            ``TRANSFER_WORKER_MAX_RUNS``.
        worker_max_memory_mb: A warm worker whose resident memory is above this after a run retires
            instead of taking the next run. ``TRANSFER_WORKER_MAX_MEMORY_MB``.
        teacher_token: Opens the class view to whoever visits ``?teacher=<token>``; empty means no
            class view. ``TRANSFER_TEACHER_TOKEN``.
        demo_dir: A folder with the ants-and-bees photos (``train/`` and ``val/``) for the real-photo
            demo, used instead of downloading them. ``TRANSFER_DEMO_DIR``.
        offline: Never download pretrained weights: a backbone whose file is not on this machine
            fails with a clear message instead. On by default, in code and from the environment
            alike; ``TRANSFER_OFFLINE=0`` (or ``offline=False``) lets Keras download a missing file.
        frozen_runtime: Where frozen forward passes run (feature extraction's features, fine-tuning's
            frozen prefix, embeddings, predictions of feature-extraction runs): ``"litert"`` (default)
            converts the frozen network once (cached under ``<home>/cache/litert/``) and runs it with
            LiteRT and XNNPACK on every core, falling back to TensorFlow (and saying why in the run's
            events) when it does not convert or its outputs differ from Keras'; ``"tensorflow"``
            always uses TensorFlow. ``TRANSFER_FROZEN_RUNTIME``.
    """

    home: Path = Path("workspace")
    weights_dir: Path | None = None
    max_concurrent_runs: int = 1
    max_upload_mb: int = 200
    max_files: int = 20000
    max_pixels: int = 40_000_000
    max_session_disk_mb: int = 2000
    allowed_data_dirs: tuple[Path, ...] = ()
    standby_worker: bool = False
    executor: str = "local"
    ray_address: str = ""
    ray_num_cpus: float = 1.0
    ray_num_gpus: float = 0.0
    max_queued_per_session: int = 3
    worker_nice: int = 10
    worker_max_runs: int = 20
    worker_max_memory_mb: int = 3000
    # The class view and the real-photo demo.
    teacher_token: str = field(default="", repr=False)
    demo_dir: Path | None = None
    offline: bool = True
    frozen_runtime: str = "litert"

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home))
        if self.weights_dir is not None:
            object.__setattr__(self, "weights_dir", Path(self.weights_dir))
        object.__setattr__(self, "allowed_data_dirs", tuple(Path(p) for p in self.allowed_data_dirs))
        if self.demo_dir is not None:
            object.__setattr__(self, "demo_dir", Path(self.demo_dir))
        for name in ("max_concurrent_runs", "max_upload_mb", "max_files", "max_pixels", "max_session_disk_mb",
                     "max_queued_per_session", "worker_max_runs", "worker_max_memory_mb"):
            if getattr(self, name) < 1:
                _fail(f"{name} must be >= 1.", **{name: getattr(self, name)})
        if self.executor not in EXECUTORS:
            _fail(f"executor must be one of {EXECUTORS}.", executor=self.executor)
        if self.frozen_runtime not in FROZEN_RUNTIMES:
            _fail(f"frozen_runtime must be one of {FROZEN_RUNTIMES}.", frozen_runtime=self.frozen_runtime)
        for name in ("ray_num_cpus", "ray_num_gpus"):
            if getattr(self, name) < 0:
                _fail(f"{name} must be >= 0.", **{name: getattr(self, name)})
        if not 0 <= self.worker_nice <= 19:
            _fail("worker_nice must be between 0 and 19.", worker_nice=self.worker_nice)

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @classmethod
    def from_env(cls, *, server: bool = False) -> Settings:
        """Read settings from ``TRANSFER_*`` environment variables.

        Args:
            server: The caller is a long-lived app server: a standby worker is on
                unless ``TRANSFER_STANDBY_WORKER=0`` (a one-shot command would leave
                it behind unused).
        """
        defaults = {spec.name: spec.default for spec in dataclasses.fields(cls)}
        defaults["standby_worker"] = server
        return cls(**{name: read(variable, defaults[name]) for name, (variable, read) in SETTING_VARIABLES.items()})
