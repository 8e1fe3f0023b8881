"""Features: one declarative TA-Lib feature set shared by batch, stream and serving."""

from raytrader.errors import UnknownNameError
from raytrader.features.bar_features_v1 import BAR_FEATURES_V1
from raytrader.features.engine import WARM_COLUMN, compute_features
from raytrader.features.spec import FeatureSet, FeatureSpec

FEATURE_SETS: dict[str, FeatureSet] = {BAR_FEATURES_V1.name: BAR_FEATURES_V1}


def get_feature_set(name: str) -> FeatureSet:
    try:
        return FEATURE_SETS[name]
    except KeyError:
        raise UnknownNameError("feature set", name, list(FEATURE_SETS)) from None


__all__ = [
    "BAR_FEATURES_V1",
    "FEATURE_SETS",
    "WARM_COLUMN",
    "FeatureSet",
    "FeatureSpec",
    "compute_features",
    "get_feature_set",
]
