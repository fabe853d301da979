"""``lookahead_audit_job``: the look-ahead audit as a Dagster job (same audit as ``mdp audit-lookahead``).

The op fails (``dg.Failure``) when any column not declared in ``LOOKAHEAD_COLUMNS`` changed for a
row known before the cut time; the failure and the materialized metadata name table, column, row
and cut time. It reads only the offline source (no lake, no network), so it can run anywhere.
"""

import dagster as dg

from platform_assets.audit.lookahead import DEFAULT_DAYS, DEFAULT_SYMBOLS, parse_sample, run_audit


class LookaheadAuditConfig(dg.Config):
    symbols: list[str] = list(DEFAULT_SYMBOLS)
    days: list[str] = [d.isoformat() for d in DEFAULT_DAYS]
    cuts_per_session: int = 3
    seed: int = 7


@dg.op(description="Perturb every input after sampled cut times and prove no derived column changed for rows known before them")
def lookahead_audit(context: dg.OpExecutionContext, config: LookaheadAuditConfig) -> dict:
    symbols, days = parse_sample(config.symbols, config.days)
    report = run_audit(symbols, days, cuts_per_session=config.cuts_per_session, seed=config.seed)
    summary = report.as_dict()
    context.add_output_metadata({
        "passed": report.passed, "samples": report.samples, "rows_compared": report.rows_compared,
        "tables": dg.MetadataValue.json(summary["tables"]), "declared_lookahead": dg.MetadataValue.json(summary["declared_lookahead"]),
        "seconds": summary["seconds"],
    })
    if not report.passed:
        raise dg.Failure(
            description=f"look-ahead in {len(summary['failing_columns'])} column(s): {', '.join(summary['failing_columns'])}",
            metadata={"examples": dg.MetadataValue.md("\n".join(f"- {e}" for e in summary["examples"]))},
        )
    return summary


@dg.job(description="Look-ahead audit of every derived table and feature version on the offline source")
def lookahead_audit_job():
    lookahead_audit()
