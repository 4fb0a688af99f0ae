"""Frozen activations: extracted once per text and model, cached, read by probes and relabellers."""

from w2s_ray.activations.extract import ExtractJob, extract_worker
from w2s_ray.activations.features import FeatureSource, SplitActivations, feature_source
from w2s_ray.activations.store import ActivationStore, model_key, text_keys

__all__ = ["ActivationStore", "ExtractJob", "FeatureSource", "SplitActivations", "extract_worker",
           "feature_source", "model_key", "text_keys"]
