"""fastevalcb.tables.checks: each fast path's one-time check against wandb's public API passes
on this wandb and fails when our writer does not record what wandb records."""

from __future__ import annotations

import pytest


@pytest.mark.fast_path
def test_the_links_check_passes_and_finds_a_copied_data_table(wandb_env, monkeypatch):
    """The "links" fast path's check (a reference entry to the data table, as wandb's
    ``add_reference`` records it) passes on this wandb, and fails when our writer leaves
    the link to wandb's ``Artifact.add``, which copies the data table."""
    from fastevalcb.tables import _wandb, checks, streamed

    check = _wandb._checks["links"]  # as registered: its artifacts cleaned up after
    check()
    monkeypatch.setattr(streamed, "add_link_references", lambda artifact, type_map: 0)
    with pytest.raises(checks.FastPathMismatch, match="linked table's manifest"):
        check()


@pytest.mark.fast_path
def test_the_tables_check_passes_and_finds_a_chart_table_written_otherwise(wandb_env, monkeypatch):
    """The "tables" check compares a chart's :class:`ScalarTable` with ``wandb.Table``'s
    JSON too: a writer that drops wandb's NaN-as-null fails it."""
    from fastevalcb.tables import _wandb, checks, columnar

    check = _wandb._checks["tables"]
    check()
    monkeypatch.setattr(columnar, "_column_to_json", lambda column, artifact: list(column))
    with pytest.raises(checks.FastPathMismatch, match="a chart table's JSON"):
        check()
