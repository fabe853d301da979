"""Minutes before a session's first bar (the vendor sent no bar: nobody traded at the open) hold no
real bar and no price: they must never pass as real rows, neither to ``latest`` inference ("the
newest real row") nor to ``model_frame()`` ("imputed rows dropped"), nor in the features' and
curated bars' ``is_imputed`` flag. Real graph on a temp instance: a simulated backfill, then an IB
delivery of one session without its first three minutes, curated (IB is preferred over the
simulator) and carried through every derived table."""

import datetime as dt

import pandas as pd

from platform_api.backfill import plan_backfill, run_backfill
from platform_api.retrieval import get_curated_bars, get_features_for_inference, get_features_for_training
from src.storage.raw_store import RawStore

DAY = dt.date(2024, 12, 3)
OPEN = pd.Timestamp("2024-12-03 14:30", tz="UTC")
FIRST_BAR = OPEN + pd.Timedelta(minutes=3)


def test_minutes_before_the_first_bar_are_never_real_rows(platform):
    plan = plan_backfill(["AAPL"], dt.date(2024, 12, 2), DAY)
    assert run_backfill(platform.instance, plan, defs=platform.defs, add_missing_symbols=True).success
    base = str(platform.settings.base_path)
    sim = RawStore(base, source="sim").read_tws_bars(["AAPL"], "2024-12-03", "2024-12-04")
    assert (sim["ts"] == OPEN).any()
    late = sim[sim["ts"] >= FIRST_BAR][["symbol", "ts", "open", "high", "low", "close", "volume", "vwap", "trade_count"]]
    RawStore(base, source="ib").write_bars(late, "ib-no-opening-trades", pd.Timestamp("2024-12-04 02:00", tz="UTC"))
    derived = ["curated_bars", "aligned_bars", "bar_features", "labels"]
    report = run_backfill(platform.instance, plan_backfill(["AAPL"], DAY, DAY), defs=platform.defs, asset_selection=derived)
    assert report.success

    settings = platform.settings
    bars = get_curated_bars("AAPL", "2024-12-03", "2024-12-04", settings=settings)
    opening = bars[bars["ts"] < FIRST_BAR]
    assert len(opening) == 3 and opening["close"].isna().all() and (opening["dq_status"] == "missing").all()
    assert opening["is_imputed"].all()  # not a real bar (dq_status says no price could be carried)
    five = get_curated_bars("AAPL", "2024-12-03", "2024-12-04", frequency="5min", settings=settings)
    assert five["has_gap"].iloc[0] and five["imputed_minutes"].iloc[0] == 3

    for version in ("v1", "v2"):
        train = get_features_for_training(["bar_features"], {"bar_features": version}, ["AAPL"], "2024-12-02", "2024-12-04",
                                          include_labels=True, settings=settings)
        rows = train.features[train.features["ts"] < FIRST_BAR]
        assert len(rows[rows["ts"] >= OPEN]) == 3 and rows[rows["ts"] >= OPEN]["is_imputed"].all()
        frame = train.model_frame()
        assert not ((frame["ts"] >= OPEN) & (frame["ts"] < FIRST_BAR)).any()  # model_frame drops rows without a real bar

        previous_close = pd.Timestamp("2024-12-02 20:59", tz="UTC")
        for at, want in [("2024-12-03T14:31:30Z", previous_close), ("2024-12-03T14:33:10Z", previous_close),
                         ("2024-12-03T14:34:30Z", FIRST_BAR)]:
            now = get_features_for_inference(["bar_features"], version, ["AAPL"], at, mode="latest", settings=settings)
            row = now.features.reset_index().iloc[0]
            assert row["ts"] == want, (version, at, row["ts"])
            assert not row["is_imputed"]
