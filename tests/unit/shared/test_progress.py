"""What a training progress bar says, from a result as the API returns it."""

from __future__ import annotations

from shared.progress import epochs_done, phase_text


def test_the_phase_until_the_first_epoch_then_training_then_the_end() -> None:
    created = {"status": "created", "train_metrics": {}, "progress": None}
    assert phase_text(created) == "starting the trainer"
    reading = {
        "status": "waiting_data",
        "train_metrics": {},
        "progress": {"phase": "reading_data", "detail": "read 900 of 1,797 samples", "done": 900, "total": 1797},
    }
    assert phase_text(reading) == "read 900 of 1,797 samples"
    assert phase_text({**reading, "progress": {"phase": "waiting_data", "detail": ""}}) == "waiting_data"
    assert phase_text({"status": "waiting_data", "train_metrics": {}}) == "waiting data"
    training = {**reading, "status": "training", "train_metrics": {"loss": [1.0, 0.5]}}
    assert (phase_text(training), epochs_done(training)) == ("training", 2)
    assert phase_text({**training, "status": "failed"}) == "failed"
