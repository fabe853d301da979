"""The benchmark suite still runs (tiny scale; no timing is asserted)."""

from bench import databento_decode, retrieval, scale
from bench.common import format_table


def test_retrieval_and_scale_benchmarks_run_and_agree_with_their_baselines():
    results = retrieval.run(symbols=2, days=3, inference_symbols=3, repeat=1) + scale.run(symbols=5, years=1)
    table = format_table(results)
    assert "training pull 2 sym x 3 days" in table and "inference latest, 3 symbols" in table
    assert all(r.ours_s > 0 for r in results)
    assert results[0].rows == 2 * 3 * 390  # the API returned exactly the rows the pandas baseline found


def test_databento_decode_benchmark_runs_and_matches_the_loop():
    results = databento_decode.run(records=4000, loop_records=400, repeat=1)
    assert results[0].rows == 4000 and results[0].baseline_s > 0 and results[1].ours_s > 0


def test_throughput_benchmark_runs_both_paths_and_the_floor():
    from bench import throughput

    results = throughput.run(sizes=(1, 2), days=3, workers=1, daily_symbols=3)
    assert len(results) == 13 and all(r.ours_s > 0 for r in results)
    assert all(r.baseline_s > 0 for r in results if "marginal" not in r.what and "extrapolated" not in r.what)
    scale = next(r for r in results if "500 x 5 years extrapolated" in r.what)
    assert " min = " in scale.note and "1260 dates x" in scale.note
    table = format_table(results)
    assert "whole graph 2 sym x 3 days" in table and "a new bar_features version (v2) over stored history, 6 symbol-days" in table and results[-1].rows == 3
    steps = results[0].note.split("(ms per symbol-day): ")[1]
    assert all(f"{asset} " in steps for asset in ("raw_bars_sim", "curated_bars", "aligned_bars", "bar_features", "labels", "l2_features"))


def test_new_version_benchmark_runs_at_two_symbol_counts():
    from bench import new_version

    results = new_version.run(symbols=(1, 2), days=3, workers=1, reps=1)
    table = format_table(results)
    assert "a new bar_features version (v2), 2 sym x 3 days" in table and "new version: rate 1 -> 2 symbols" in table
    assert all(r.ours_s > 0 for r in results) and results[1].rows == 2 * 3 * 390 * 2


def test_parquet_encoding_benchmark_compares_both_encodings_on_the_graphs_files():
    from bench import parquet_encoding

    results = parquet_encoding.run(symbols=1, days=2, workers=1, reps=1)
    names = [r.what.split(":")[0] for r in results]
    assert names == [table for table in parquet_encoding.TABLES for _ in ("dictionaries", "codec")]
    assert all(r.ours_s > 0 and r.baseline_s > 0 and " MB vs " in r.note for r in results)
    assert all("LZ4 below" in r.what and r.baseline == "zstd for every file" for r in results[1::2])


def test_history_length_benchmark_runs_two_lengths_and_the_listing_comparison():
    from bench import history_length

    results = history_length.run(symbols=1, days=(2, 4), workers=1, coverage_batches=(20, 60))
    table = format_table(results)
    assert "whole graph 1 sym x 4 days (4 symbol-days" in table and "linearity 2 -> 4 days of history" in table
    assert "raw_bars_sim" in results[0].note and "curated_bars" in results[1].note  # per-asset step times
    listing, coverage, refresh = results[-3:]
    assert listing.what.startswith("finding a quarter's L2 files") and listing.ours_s > 0 and listing.baseline_s > 0
    assert coverage.what.startswith("coverage manifest rebuilt") and coverage.ours_s > 0 and "us per logged batch" in coverage.note
    assert refresh.what.startswith("coverage manifest at the end of a daily raw run") and refresh.baseline_s == coverage.ours_s > 0


def test_worker_start_benchmark_compares_start_methods_and_the_daily_split():
    from bench import worker_start

    results = worker_start.run(workers=2, daily_symbols=2)
    first, later, daily = results
    assert first.what.startswith("2 backfill workers ready, first") and later.what.startswith("2 backfill workers ready, a later")
    assert all(r.ours_s > 0 and r.baseline_s > 0 for r in results)
    assert daily.note.startswith("2 runs of symbol groups") and daily.rows == 2


def test_per_symbol_pass_benchmark_checks_equal_outputs_and_times_both_paths():
    from bench import per_symbol_pass

    curation, raw, floor = per_symbol_pass.run(symbols=2, days=3, reps=1)  # the run asserts equal outputs itself
    assert curation.what.startswith("gap engine, 6 symbol-days") and curation.baseline_s > 0 and curation.ours_s > 0
    assert raw.what.startswith("raw batches built for the lake, 6 symbol-days") and raw.baseline_s > 0 and raw.rows > 0
    assert floor.baseline_s is None and floor.ours_s > 0 and "L2 day file write" in floor.note


def test_depth_messages_benchmark_checks_equal_files_and_times_both_writers():
    from bench import depth_messages

    total, last = depth_messages.run(flushes=3, per_flush=200)  # the run asserts both files parse to the messages
    assert total.ours_s > 0 and total.baseline_s > 0 and last.ours_s <= total.ours_s
