"""Run-event hooks hear of every run's end, and a run builds its parts from its own plugins."""

from __future__ import annotations

import io
import json
import types

import pytest
from rich.console import Console

from segkit.core import (
    Config,
    ConfigError,
    Param,
    PluginError,
    RunView,
    SegkitError,
    get_plugins,
    hookimpl,
    load_config,
    load_plugins,
)
from segkit.model import load_checkpoint
from segkit.train import Runner, run_config

from .tiny import write_tiny_config


class RunRecorder:
    """A plugin object that remembers the run-event hooks it received."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    @hookimpl
    def on_run_start(self, run):
        self.events.append(("start", run.run_dir))

    @hookimpl
    def on_run_end(self, run, summary, error):
        self.events.append(("end", run.run_dir, summary, error))


def quiet() -> Console:
    return Console(file=io.StringIO())


def record_run(tmp_path, *overrides: str, **tiny):
    """Run a tiny config with a recorder plugin; returns the recorder and the run's error."""
    recorder = RunRecorder()
    plugins = load_plugins(extra=(recorder,))
    config = load_config(write_tiny_config(tmp_path, **tiny), overrides, plugins.registry)
    error = None
    try:
        run_config(config, tmp_path / "out", plugins, quiet())
    except SegkitError as exc:
        error = exc
    return recorder, error


def test_run_end_hook_hears_of_a_finished_run(tmp_path):
    recorder, error = record_run(tmp_path)
    assert error is None
    start, end = recorder.events
    assert start == ("start", tmp_path / "out")
    kind, run_dir, summary, failure = end
    assert (kind, run_dir, failure) == ("end", tmp_path / "out", None)
    assert summary == json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "miou" in summary


def test_run_end_hook_gets_the_error_when_the_split_is_too_small(tmp_path):
    recorder, error = record_run(tmp_path, "data.batch_size=4", train_size=3)
    assert isinstance(error, ConfigError)
    assert "data.batch_size 4 is larger than the training split" in str(error)
    assert [event[0] for event in recorder.events] == ["start", "end"]
    _, _, summary, failure = recorder.events[-1]
    assert failure is error and summary == {}


def test_run_end_hook_gets_the_error_when_the_loss_is_not_finite(tmp_path):
    recorder, error = record_run(tmp_path, lr=1e30, steps='["train"]')
    assert error is not None and "the loss became" in str(error)
    _, _, summary, failure = recorder.events[-1]
    assert failure is error and summary == {}


class EpochWatcher:
    """A plugin that reads, at each epoch's end, only what RunView promises of the run."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    @hookimpl
    def on_epoch_end(self, run: RunView, epoch, metrics):
        run.log(f"watched epoch {epoch}")
        self.seen.append(
            {
                "config": run.config,
                "run_dir": run.run_dir,
                "class_names": list(run.class_names),
                "history": [dict(record) for record in run.history],
                "is_main": run.is_main,
                "metrics": dict(metrics),
            }
        )


def test_run_events_get_what_run_view_declares(tmp_path):
    declared = {name for name in vars(RunView) if not name.startswith("_") and name != "log"}
    assert declared == {"config", "run_dir", "class_names", "history", "is_main"}
    watcher = EpochWatcher()
    plugins = load_plugins(extra=(watcher,))
    config = load_config(write_tiny_config(tmp_path), ["train.epochs=2"], plugins.registry)
    out = io.StringIO()
    run_config(config, tmp_path / "out", plugins, Console(file=out))
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").open()]
    assert [seen["metrics"] for seen in watcher.seen] == records
    for epoch, seen in enumerate(watcher.seen, start=1):
        assert isinstance(seen["config"], Config) and seen["config"].train.epochs == 2
        assert seen["run_dir"] == tmp_path / "out" and seen["is_main"]
        assert seen["class_names"] == load_checkpoint(tmp_path / "out" / "last.pt")["class_names"]
        assert seen["history"] == records[:epoch]  # the epoch's own record included
        assert f"watched epoch {epoch}" in out.getvalue()


CALLS: list[int] = []


def make_counting_postprocessor(tag=7):
    """An identity post-processor that counts the images it saw."""

    def postprocess(probs, images):
        CALLS.append(len(probs))
        return probs

    return postprocess


@hookimpl
def register_postprocessors(register):
    register(
        "counting_identity",
        make_counting_postprocessor,
        params=[Param("tag", int, help="unused")],
        help="identity, counting its calls",
    )


def test_a_runner_builds_its_postprocessors_from_its_own_plugins(tmp_path):
    own = types.ModuleType("own_postprocessors")
    own.register_postprocessors = register_postprocessors
    plugins = load_plugins(extra=(own,))
    assert "counting_identity" in plugins.registry.names("postprocessor")
    assert "counting_identity" not in get_plugins().registry.names("postprocessor")

    path = write_tiny_config(
        tmp_path, extra='\n[[postprocessors]]\nname = "counting_identity"\ntag = 3\n'
    )
    with pytest.raises(ConfigError, match=r"unknown postprocessor 'counting_identity'"):
        load_config(path, registry=get_plugins().registry)  # the process-wide set lacks it
    config = load_config(path, registry=plugins.registry)

    CALLS.clear()
    runner = Runner(config, tmp_path / "out", plugins, quiet())
    assert runner.postprocessors.names() == ["counting_identity"]
    summary = runner.execute()
    assert sum(CALLS) == 6  # every val image went through it (val_size = 6)
    post = summary["postprocessed"]["counting_identity"]
    assert post["miou"] == pytest.approx(summary["miou"])  # identity changes nothing
    with pytest.raises(PluginError, match=r"unknown postprocessor 'counting_identity'"):
        Runner(config, tmp_path / "other", get_plugins(), quiet())
