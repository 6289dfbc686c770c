"""What a client sees of a result: finished only once its metrics and its model are stored."""

from __future__ import annotations

from services.api.queries import visible_status


def test_finished_waits_for_the_metrics_and_the_model() -> None:
    assert visible_status("finished", metrics_stored=False, model_stored=False) == "training"
    assert visible_status("finished", metrics_stored=True, model_stored=False) == "training"
    assert visible_status("finished", metrics_stored=True, model_stored=True) == "finished"
    assert visible_status("failed", metrics_stored=False, model_stored=False) == "failed"
    assert visible_status("waiting_data", metrics_stored=False, model_stored=False) == "waiting_data"
