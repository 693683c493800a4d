"""eval and the run's files: bad requests and damaged files stop before any attack runs,
and nothing already written is lost."""

import json
import shutil

import pytest

from sparta.cli import main
from sparta.runfiles import METRICS_FILE, RECORD_KEYS, EvalRecord, find_record, read_metrics, record_key


@pytest.fixture()
def run_copy(trained_run, tmp_path):
    """A private copy of the session's trained run, with one clean record in eval.json."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "eval.json").unlink(missing_ok=True)
    assert main(["eval", str(run), "--attacks", "clean", "--n", "16"]) == 0
    return run


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--attacks", ""], "no attack given; choose from: clean, fgsm"),
        (["--attacks", "cw,foo"], "unknown attack 'foo'; choose from: clean,"),
        (["--attacks", "clean", "--batch-size", "-1"], "batch-size must be >= 1"),
        (["--attacks", "clean", "--batch-size", "0"], "batch-size must be >= 1"),
        (["--attacks", "clean", "--n", "0"], "--n must be >= 1"),
    ],
)
def test_bad_requests_fail_before_anything_runs_and_keep_eval_json(run_copy, capsys, argv, message):
    before = (run_copy / "eval.json").read_text()
    capsys.readouterr()
    assert main(["eval", str(run_copy), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparta: error:") and message in err and "\n" not in err
    assert (run_copy / "eval.json").read_text() == before


def test_repeated_attacks_run_once(run_copy, capsys):
    assert main(["eval", str(run_copy), "--attacks", "clean,clean,fgsm,FGSM", "--n", "16"]) == 0
    records = json.loads((run_copy / "eval.json").read_text())["results"]
    assert sorted(r["attack"] for r in records) == ["clean", "fgsm"]


@pytest.mark.parametrize(
    "content",
    ['{"results": [{"attack": "clean"', "", "[]", '{"results": {}}', '{"results": [{"attack": "pgd"}]}'],
    ids=["cut-short", "empty", "list", "results-not-list", "record-incomplete"],
)
def test_a_damaged_eval_json_stops_eval_before_the_attacks_and_stays(run_copy, capsys, content, monkeypatch):
    from sparta import evaluation

    (run_copy / "eval.json").write_text(content)
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("an attack ran"))
    assert main(["eval", str(run_copy), "--attacks", "pgd", "--n", "16"]) == 2
    err = capsys.readouterr().err
    assert "eval.json" in err and "move it away" in err
    assert (run_copy / "eval.json").read_text() == content


def test_metrics_with_a_cut_last_line_still_resume(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / METRICS_FILE).write_text('{"epoch": 0, "train_loss": 1.0}\n{"epoch": 1, "train_lo')
    assert [r["epoch"] for r in read_metrics(run)] == [0]
    (run / METRICS_FILE).write_text('{"epoch": 0}\n[1, 2]\n{"epoch": 2}\n')
    with pytest.raises(Exception, match="line 2 is not an epoch record"):
        read_metrics(run)


def test_a_weaker_rerun_never_replaces_a_stronger_record(run_copy, monkeypatch):
    """Records are keyed by (attack, eps, n): a rerun replaces its own record when its attack
    is at least as strong, and otherwise leaves the stronger one (with a warning)."""
    from sparta import evaluation
    from sparta.progress import SpartaWarning

    def pgd_records():
        records = json.loads((run_copy / "eval.json").read_text())["results"]
        return [r for r in records if r["attack"] == "pgd"]

    monkeypatch.setitem(evaluation.DEFAULT_OPTIONS, "pgd", {"steps": 5, "restarts": 2})
    evaluation.evaluate_run(run_copy, ["pgd"], n=16)
    assert [r["settings"]["steps"] for r in pgd_records()] == [5]
    monkeypatch.setitem(evaluation.DEFAULT_OPTIONS, "pgd", {"steps": 3, "restarts": 1})
    with pytest.warns(
        SpartaWarning,
        match=r"keeps its earlier pgd record .*\(steps 5, restarts 2\) than this run's "
        r"\(steps 3, restarts 1\)",
    ):
        evaluation.evaluate_run(run_copy, ["pgd"], n=16)
    assert [r["settings"]["steps"] for r in pgd_records()] == [5]
    monkeypatch.setitem(evaluation.DEFAULT_OPTIONS, "pgd", {"steps": 6, "restarts": 2})
    evaluation.evaluate_run(run_copy, ["pgd"], n=16)
    assert [r["settings"]["steps"] for r in pgd_records()] == [6]  # stronger: replaced, not added
    evaluation.evaluate_run(run_copy, ["pgd"], n=8)  # another n is another measurement
    assert sorted(r["n"] for r in pgd_records()) == [8, 16]


def test_merge_collapses_duplicates_an_old_file_holds():
    from sparta.evaluation import merge_records

    old = [
        {"attack": "clean", "eps": 0.0, "n": 10, "accuracy": 0.5},
        {"attack": "clean", "eps": 0.0, "n": 10, "accuracy": 0.6},
    ]
    merged, kept_out = merge_records(old, [])
    assert merged == [old[1]] and kept_out == []


def _rec(attack, eps, n, accuracy=0.5) -> EvalRecord:
    return {"attack": attack, "eps": eps, "n": n, "accuracy": accuracy}


def test_find_record_the_latest_of_a_key_wins():
    records = [_rec("pgd", 0.1, 16, 0.3), _rec("cw", 0.1, 16, 0.2), _rec("pgd", 0.1, 16, 0.4)]
    assert find_record(records, "pgd", 0.1, 16) is records[2]
    assert find_record(records, "cw", 0.1, 16) is records[1]
    assert find_record(records, "fgsm", 0.1, 16) is None and find_record([], "pgd", 0.1, 16) is None


def test_find_record_matches_eps_to_8_decimals_and_n_exactly():
    records = [_rec("pgd", 8 / 255, 16)]
    assert find_record(records, "pgd", 8 / 255 + 1e-9, 16) is records[0]
    assert find_record(records, "pgd", json.loads(json.dumps(8 / 255)), 16) is records[0]
    assert find_record(records, "pgd", 8 / 255 + 1e-6, 16) is None
    assert find_record(records, "pgd", 8 / 255, 15) is None and find_record(records, "pgd", 8 / 255, 17) is None


def test_clean_is_found_at_any_eps():
    records = [_rec("clean", 0.0, 16)]
    assert find_record(records, "clean", 0.1, 16) is records[0]
    assert find_record(records, "clean", 0.3, 8) is None  # n still counts
    assert record_key(records[0]) == record_key(_rec("clean", 0.2, 16)) == ("clean", 0.0, 16)


def test_merge_and_find_share_one_key():
    """What merge_records keeps for a key is what find_record finds for it."""
    from sparta.evaluation import merge_records

    old = [_rec("pgd", 0.1, 16, 0.3), _rec("clean", 0.0, 16, 0.9)]
    new = [_rec("pgd", 0.1 + 1e-10, 16, 0.4), _rec("pgd", 0.1, 8, 0.5), _rec("clean", 0.0, 16, 0.8)]
    merged, kept_out = merge_records(old, new)
    assert kept_out == [] and len(merged) == 3
    assert find_record(merged, "pgd", 0.1, 16) is new[0] and find_record(merged, "pgd", 0.1, 8) is new[1]
    assert find_record(merged, "clean", 0.1, 16) is new[2]


def test_record_keys_are_the_typed_records_required_keys():
    assert set(RECORD_KEYS) == EvalRecord.__required_keys__


def test_a_folder_that_refuses_writes_is_one_line_and_keeps_eval_json(run_copy, capsys, monkeypatch):
    """An immutable (chattr +i) or read-only run folder: mkstemp there fails with EPERM."""
    import errno

    from sparta import runfiles

    before = (run_copy / "eval.json").read_text()

    def refused(*args, dir=None, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(dir))

    monkeypatch.setattr(runfiles.tempfile, "mkstemp", refused)
    capsys.readouterr()
    assert main(["eval", str(run_copy), "--attacks", "clean,fgsm", "--n", "16"]) == 2
    output = capsys.readouterr().err
    expected = f"sparta: error: cannot write {run_copy / 'eval.json'}: Operation not permitted"
    assert output.strip().splitlines()[-1] == expected
    assert "running on" not in output  # refused before the first attack
    assert (run_copy / "eval.json").read_text() == before


def test_the_shipped_eval_json_reads_as_typed_records():
    from pathlib import Path

    from sparta import runfiles

    folder = Path(runfiles.__file__).parent / "pretrained_models" / "smallcnn-relu-fashion-mnist"
    records = runfiles.read_eval_records(folder)
    assert all(set(RECORD_KEYS) <= set(r) <= set(EvalRecord.__annotations__) for r in records)
    assert find_record(records, "clean", 0.1, 1000)["n"] == 1000
    assert find_record(records, "pgd", 0.1, 10000)["settings"]["steps"] == 20


@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_evaluate_run_names_a_folder_that_is_not_a_run(tmp_path, folder):
    """From Python as from the CLI: the fault is the folder, not an unwritable eval.json."""
    from sparta import evaluation
    from sparta.errors import SpartaError

    run_dir = tmp_path / folder
    if folder == "empty":
        run_dir.mkdir()
    with pytest.raises(SpartaError, match=r"is not a run directory \(no config.json\)"):
        evaluation.evaluate_run(run_dir, ["clean"], n=8)
    assert not (run_dir / "eval.json").exists()
