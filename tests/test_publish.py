"""publish writes only into a folder of its own: never over the user's files, the checkout or the run, never
over another run's publication; the new copy replaces an earlier one in one step, and only files that are
what their jobs recorded go out. Runs here are made of recorded files (no workflow run needed)."""
import hashlib
import json
import os
from pathlib import Path

import pytest

from ntkscaling import files, publish


def _fake_run(root: Path, name: str = "tiny", value: str = "0.25") -> Path:
    """A finished run's files under root/results/<name>, each written and recorded as a job would."""
    run = Path("results") / name
    cwd = os.getcwd()
    os.chdir(root)
    try:
        files.save_json(run / "data" / "prepared.json", {"provenance": {"config": {"run_name": name}}})
        for rel in publish.run_files():
            if rel.endswith("metrics.csv"):
                files.write_rows(run / rel, [{"metric": m, "value": value} for m in ("test_error", "train_loss")])
            elif rel.endswith(".csv"):
                files.write_rows(run / rel, [{"alpha": value}], columns=("alpha",))
            else:
                with files.atomic_path(run / rel) as tmp:
                    Path(tmp).write_text(f"{rel} {value}\n")
    finally:
        os.chdir(cwd)
    return root / run


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A checkout with a finished run, a .git folder and a docs folder of the user's own files."""
    monkeypatch.chdir(tmp_path)
    _fake_run(tmp_path)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "method.md").write_text("# the user's own text\n")
    return tmp_path


def test_publish_copies_a_run_with_the_hash_of_every_file(checkout):
    written = publish.publish("results/tiny", "docs/results/tiny")
    dest = checkout / "docs" / "results" / "tiny"
    prov = json.loads((dest / "provenance.json").read_text())
    assert set(prov["files"]) == {p.relative_to("docs/results/tiny").as_posix() for p in written} \
        == set(publish.run_files())
    assert all(hashlib.sha256((dest / n).read_bytes()).hexdigest() == h for n, h in prov["files"].items())
    assert "train_loss" not in (dest / "scaling" / "metrics.csv").read_text()  # test metrics only
    assert sorted(p.name for p in (checkout / "docs" / "results").iterdir()) == ["tiny"]  # no staging left


@pytest.mark.parametrize("dest,expected", [
    ("docs", "holds 1 file(s) and is not an earlier publication"),
    (".", "is or holds the checkout"),
    ("..", "is or holds the checkout"),
    ("results/tiny", "is, holds or lies inside the run"),
    ("results", "is, holds or lies inside the run"),
    ("results/tiny/summary/published", "is, holds or lies inside the run"),
    ("docs/method.md", "a file, not a folder"),
])
def test_publish_refuses_a_destination_it_does_not_own_and_changes_nothing(checkout, dest, expected):
    before = _tree(checkout)
    with pytest.raises(publish.PublishError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        publish.publish("results/tiny", dest)
    assert _tree(checkout) == before
    res = publish.main  # the command says it in one line, as a SystemExit
    with pytest.raises(SystemExit, match="publish: "):
        res(["results/tiny", dest])


def test_publish_never_replaces_another_runs_publication_or_an_edited_one(checkout):
    _fake_run(checkout, "planted", "0.24")
    publish.publish("results/planted", "docs/results/planted")
    before = _tree(checkout)
    with pytest.raises(publish.PublishError, match="holds the publication of results/planted, not of results/tiny"):
        publish.publish("results/tiny", "docs/results/planted")
    (checkout / "docs" / "results" / "planted" / "summary" / "exponents.csv").write_text("alpha\n0.5\n")
    with pytest.raises(publish.PublishError, match="summary/exponents.csv changed since it was published"):
        publish.publish("results/planted", "docs/results/planted")
    (checkout / "docs" / "results" / "planted" / "notes.md").write_text("mine\n")
    with pytest.raises(publish.PublishError, match=r"holds files its earlier publication did not write \(notes.md"):
        publish.publish("results/planted", "docs/results/planted")
    assert (checkout / "docs" / "results" / "planted" / "notes.md").read_text() == "mine\n"
    assert {k for k in _tree(checkout)} == {*before, "docs/results/planted/notes.md"}


def test_a_link_as_destination_is_refused(checkout):
    (checkout / "docs" / "results").mkdir()
    (checkout / "docs" / "results" / "tiny").symlink_to(checkout / "docs")
    with pytest.raises(publish.PublishError, match="a symbolic link"):
        publish.publish("results/tiny", "docs/results/tiny")
    assert (checkout / "docs" / "method.md").exists()


def test_republishing_replaces_the_earlier_copy_whole_and_a_killed_publish_leaves_it_intact(checkout, monkeypatch):
    publish.publish("results/tiny", "docs/results/tiny")
    dest = checkout / "docs" / "results" / "tiny"
    first = _tree(dest)
    _fake_run(checkout, "tiny", "0.30")  # the run re-made with other numbers
    calls = []

    def killed(run, name, staging):
        calls.append(name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the copy stops a third of the way
        return copy_one(run, name, staging)
    copy_one = publish._copy_one
    monkeypatch.setattr(publish, "_copy_one", killed)
    with pytest.raises(KeyboardInterrupt):
        publish.publish("results/tiny", "docs/results/tiny")
    assert _tree(dest) == first  # the earlier publication, whole
    monkeypatch.setattr(publish, "_copy_one", copy_one)
    publish.publish("results/tiny", "docs/results/tiny")
    second = _tree(dest)
    assert second.keys() == first.keys() and b"0.30" in second["summary/exponents.csv"]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tiny"]


def test_a_file_that_is_not_what_its_job_recorded_is_not_published(checkout):
    table = checkout / "results" / "tiny" / "summary" / "exponents.csv"
    table.write_text("alpha\n0.99\n")  # an edited answer
    with pytest.raises(publish.PublishError, match="exponents.csv: its content differs from what the job"):
        publish.publish("results/tiny", "docs/results/tiny")
    files.digest_path(table).unlink()  # a run without records
    with pytest.raises(publish.PublishError, match="exponents.csv: no record of the job that wrote it"):
        publish.publish("results/tiny", "docs/results/tiny")
    assert not (checkout / "docs" / "results").exists()
