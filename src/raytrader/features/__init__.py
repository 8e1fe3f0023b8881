"""Features: declarative TA-Lib feature sets shared by batch, stream and serving.

``bar_features_v1`` is the served set (the online store's rows, the default everywhere);
``bar_features_v2`` is its scale-free counterpart (no price or cumulative levels), computed by the
batch engine for models that name it.
"""

from raytrader.errors import UnknownNameError
from raytrader.features.bar_features_v1 import BAR_FEATURES_V1
from raytrader.features.bar_features_v2 import BAR_FEATURES_V2
from raytrader.features.engine import WARM_COLUMN, compute_features
from raytrader.features.spec import FeatureSet, FeatureSpec

FEATURE_SETS: dict[str, FeatureSet] = {fs.name: fs for fs in (BAR_FEATURES_V1, BAR_FEATURES_V2)}


def get_feature_set(name: str) -> FeatureSet:
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise UnknownNameError("feature set", name, list(FEATURE_SETS)) from None


__all__ = [
    "BAR_FEATURES_V1",
    "BAR_FEATURES_V2",
    "FEATURE_SETS",
    "WARM_COLUMN",
    "FeatureSet",
    "FeatureSpec",
    "compute_features",
    "get_feature_set",
]
