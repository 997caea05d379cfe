"""Embeddings: validation images' pooled backbone features, before and after training, in 2-D.

Works on the classifier :func:`transfer_core.models.build_classifier` makes (or
the same model loaded from ``model.keras``). TensorFlow is imported inside functions.
:func:`embeddings` seeds Keras for a random-weights "before" model, so the app runs it
in its inference worker (``transfer_core.inference``), never in the web server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from transfer_core.config import RunConfig, Settings
from transfer_core.explore.explain import as_batch, frozen_backbone

if TYPE_CHECKING:  # pragma: no cover - typing only.
    import keras

__all__ = ["TSNE_MAX_IMAGES", "EmbeddingResult", "embeddings", "pooled_features", "project"]

# t-SNE costs O(n^2) memory and time; above this many images only PCA is computed.
TSNE_MAX_IMAGES = 500


def pooled_features(model: keras.Model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """The pooled backbone features (the head's input) of raw 0..255 images.

    Args:
        model: A classifier (built or loaded).
        images: ``(N, H, W, 3)``; resized to the input size when needed.
        batch_size: Images per forward pass.

    Returns:
        ``(N, feature_dim)`` float32.
    """
    import keras

    from transfer_core.models import POOL_LAYER

    extractor = keras.Model(model.inputs[0], model.get_layer(POOL_LAYER).output, name="pooled_features")
    batch = as_batch(images, int(model.inputs[0].shape[1]))
    if len(batch) == 0:
        return np.zeros((0, int(extractor.outputs[0].shape[-1])), np.float32)
    chunks = [
        np.asarray(extractor(batch[i : i + batch_size], training=False)) for i in range(0, len(batch), batch_size)
    ]
    return np.concatenate(chunks, axis=0).astype(np.float32)


def project(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project feature vectors to 2-D.

    Args:
        features: ``(N, D)`` features.
        method: ``"pca"`` (linear, keeps global distances) or ``"tsne"`` (non-linear,
            keeps neighbourhoods; only for ``N`` <= :data:`TSNE_MAX_IMAGES`).
        seed: Random state of t-SNE.

    Returns:
        ``(N, 2)`` coordinates.

    Raises:
        ValueError: Unknown method, fewer than 3 points, or too many points for t-SNE.
    """
    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    if method not in ("pca", "tsne"):
        raise ValueError(f'method must be "pca" or "tsne". Received: method={method!r}')
    if n < 3:
        raise ValueError(f"At least 3 points are needed for a projection. Received: {n} points")
    if method == "pca":
        from sklearn.decomposition import PCA

        components = min(2, features.shape[1])
        coords = PCA(n_components=components, random_state=seed).fit_transform(features)
        if components < 2:
            coords = np.hstack([coords, np.zeros((n, 1))])
        return coords
    if n > TSNE_MAX_IMAGES:
        raise ValueError(f"t-SNE is limited to {TSNE_MAX_IMAGES} points here. Received: {n} points")
    from sklearn.manifold import TSNE

    perplexity = float(max(2.0, min(30.0, (n - 1) / 3.0)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def _separation(features: np.ndarray, labels: np.ndarray) -> float | None:
    """Silhouette score of the classes in feature space (-1..1; higher = better separated)."""
    from sklearn.metrics import silhouette_score

    if len(set(labels.tolist())) < 2 or len(features) <= len(set(labels.tolist())):
        return None
    return float(silhouette_score(features, labels, metric="cosine"))


@dataclass
class EmbeddingResult:
    """Validation images projected to 2-D, before and after training.

    Attributes:
        frame: One row per (model, method, image): ``model`` ("before"/"after"),
            ``method`` ("PCA"/"t-SNE"), ``x``, ``y``, ``label``, ``path``.
        separation: ``{"before": score, "after": score}``: silhouette score of the
            classes in the pooled feature space (cosine; -1..1, higher = classes
            further apart). None when it cannot be computed.
        before_name: What "before" is, in words.
        after_name: What "after" is, in words.
        methods: The methods computed (t-SNE only for small sets).
        notes: Plain-language remarks (e.g. why t-SNE was skipped).
    """

    frame: pd.DataFrame
    separation: dict[str, float | None]
    before_name: str
    after_name: str
    methods: list[str]
    notes: list[str] = field(default_factory=list)


def embeddings(
    run_model: keras.Model,
    config: RunConfig,
    *,
    settings: Settings,
    max_images: int = 1000,
    seed: int = 0,
) -> EmbeddingResult:
    """Validation images' pooled features, before and after training, projected to 2-D.

    "Before" is a freshly built classifier with the run's backbone and weights
    choice (ImageNet weights, or random weights for a from-scratch run): the
    base as it was before this run trained. "After" is the run's model.

    Args:
        run_model: The run's trained classifier (e.g. from :func:`load_model`).
        config: The run's configuration.
        settings: Where the offline weights are.
        max_images: Use at most this many validation images (a stratified-free
            prefix of the manifest order).
        seed: Seed of t-SNE (and of a random-weights base).

    Returns:
        An :class:`EmbeddingResult`.

    Raises:
        ValueError: Fewer than 3 validation images.
        transfer_core.zoo.WeightsUnavailableError: The pretrained weights are gone.
    """
    import keras

    from transfer_core.data import load_split_arrays, read_manifest
    from transfer_core.models import build_classifier

    spec = config.dataset
    size = int(run_model.inputs[0].shape[1])
    images, labels = load_split_arrays(spec, "val", size)
    manifest = read_manifest(spec)
    paths = list(manifest.loc[manifest["split"] == "val", "path"])
    images, labels, paths = images[:max_images], labels[:max_images], paths[:max_images]
    if len(images) < 3:
        raise ValueError(f"Embeddings need at least 3 validation images. Received: {len(images)} images")
    if config.model.weights == "random":
        # The same seed as the run, so "before" is (close to) the random start the run had.
        keras.utils.set_random_seed(config.train.seed)
    base = build_classifier(config.model, spec.num_classes, settings=settings)
    # The ImageNet backbone is frozen by definition here: LiteRT runs it when it converts and checks out.
    base_pass = frozen_backbone(base.model, images, config.model, settings)
    before = base_pass.model.run(images) if base_pass.model is not None else pooled_features(base.model, images)
    after = None
    if config.train.strategy == "feature_extraction":
        # The run never changed its backbone: the same converted network, checked against the run's model.
        run_pass = frozen_backbone(run_model, images, config.model, settings)
        if run_pass.model is not None:
            after = before if base_pass.model is not None else run_pass.model.run(images)
    if after is None:
        after = pooled_features(run_model, images)
    del base
    methods = ["PCA"]
    notes = []
    if len(images) <= TSNE_MAX_IMAGES:
        methods.append("t-SNE")
    else:
        notes.append(f"t-SNE was skipped: it is slow above {TSNE_MAX_IMAGES} images; PCA is shown.")
    names = list(spec.class_names)
    rows = []
    for which, features in (("before", before), ("after", after)):
        for method in methods:
            coords = project(features, "pca" if method == "PCA" else "tsne", seed=seed)
            rows.append(
                pd.DataFrame(
                    {
                        "model": which,
                        "method": method,
                        "x": coords[:, 0],
                        "y": coords[:, 1],
                        "label": [names[i] for i in labels],
                        "path": paths,
                    }
                )
            )
    weights_word = "random weights" if config.model.weights == "random" else "ImageNet weights"
    if config.train.strategy == "feature_extraction":
        notes.append(
            "Feature extraction never changes the backbone, so 'before' and 'after' features are the same: "
            "only the head learned. Compare with a fine-tuning run to see the features move."
        )
    return EmbeddingResult(
        frame=pd.concat(rows, ignore_index=True),
        separation={"before": _separation(before, labels), "after": _separation(after, labels)},
        before_name=f"Before: {config.model.backbone} with {weights_word}",
        after_name=f"After: {config.train.strategy.replace('_', ' ')} (this run)",
        methods=methods,
        notes=notes,
    )
