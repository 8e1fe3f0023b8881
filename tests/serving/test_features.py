"""The service's online read equals Feast's own ``get_online_features``."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.serving.conftest import World

pytestmark = pytest.mark.integration


def test_online_rows_equal_the_sdk_read(world: World) -> None:
    from raytrader.features import feast_repo as fr

    fs = fr.store("sqlite", data=world.feast_data)
    symbols = ["GOOG", "NOPE"]
    fast = fr.online_rows(fs, symbols, "1d")
    sdk = fr.online_features(fs, symbols, "1d")
    pd.testing.assert_frame_equal(fast, sdk.loc[:, list(fast.columns)], check_exact=True)
    assert pd.isna(fast.at["NOPE", "event_timestamp"])
    assert fast.at["GOOG", "event_timestamp"] == world.bars.index[-1] + pd.Timedelta(days=1)
