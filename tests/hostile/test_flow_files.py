"""Bad flow files and bad inputs through the `flowpods` command: one clear error, exit code 2, no traceback."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from flowpods.cli.main import main
from flowpods.local.loader import FlowCatalog
from tests.hostile.corpus import BAD_FLOW_FILES, BAD_INPUTS, LOG, Case, flow


def one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("bad", BAD_FLOW_FILES, ids=lambda c: c.name)
def test_validate_names_the_problem_of_each_bad_flow_file(bad: Case, tmp_path: Path, capsys) -> None:
    path = tmp_path / f"{bad.name}.yaml"
    path.write_bytes(bad.content)
    code = main(["validate", str(path)])
    out = capsys.readouterr()
    assert code == 2, out.err
    assert bad.expect in one_line(out.err)
    assert "Traceback" not in out.err + out.out


@pytest.mark.parametrize("bad", BAD_FLOW_FILES[:12], ids=lambda c: c.name)
def test_run_refuses_each_bad_flow_file_in_one_paragraph(bad: Case, tmp_path: Path, capsys) -> None:
    path = tmp_path / f"{bad.name}.yaml"
    path.write_bytes(bad.content)
    code = main(["run", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("flowpods: cannot run") and bad.expect in one_line(err)
    assert "Traceback" not in err


@pytest.mark.parametrize(("name", "text", "inputs", "expect"), BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_run_refuses_each_bad_input(name: str, text: str, inputs: list[str], expect: str, tmp_path: Path,
                                            capsys) -> None:  # fmt: skip
    path = tmp_path / "flow.yaml"
    path.write_text(text)
    args = ["run", str(path)]
    for value in inputs:
        args += ["--input", value]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert expect in one_line(err)
    assert "Traceback" not in err
    assert len(err) < 2000, "an error quotes an excerpt of a value, never all of it"


def test_flows_folder_that_is_not_a_folder_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(flow())
    assert main(["run", str(path), "--flows", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_one_bad_file_in_the_flows_folder_does_not_break_other_lookups(tmp_path: Path) -> None:
    for bad in BAD_FLOW_FILES[:10]:
        (tmp_path / f"{bad.name}.yaml").write_bytes(bad.content)
    nested = tmp_path / "team" / "more"
    nested.mkdir(parents=True)
    (nested / "child.yml").write_text("id: child\nnamespace: team\ntasks:\n" + LOG)
    catalog = FlowCatalog(tmp_path)
    found = catalog.get("team", "child")
    assert found is not None and found.id == "child"  # found in a subfolder, past ten broken files
    assert len(catalog.unreadable) == 10
    message = catalog.not_found("team", "nope")
    assert "flow team.nope not found" in message and "10 files there are not valid flows" in message


def test_hidden_folders_are_not_searched(tmp_path: Path) -> None:
    hidden = tmp_path / ".git"
    hidden.mkdir()
    (hidden / "child.yaml").write_text("id: child\nnamespace: team\ntasks:\n" + LOG)
    assert FlowCatalog(tmp_path).get("team", "child") is None


def test_escape_sequences_in_task_output_do_not_reach_the_terminal(tmp_path: Path, capsys) -> None:
    path = tmp_path / "ansi.yaml"
    path.write_text(flow(tasks='  - id: paint\n    type: Log\n    message: "\\e[31mRED\\e]0;owned\\a\\e[2J"\n'))
    assert main(["run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mRED\\x1b]0;owned\\x07\\x1b[2J" in out


def test_a_run_that_ends_validates_only_the_flows_of_the_folder_that_have_triggers(tmp_path: Path) -> None:
    (tmp_path / "a-plain.yaml").write_text("id: plain\nnamespace: team\ntasks:\n" + LOG)
    (tmp_path / "b-listener.yaml").write_text(
        "id: listener\nnamespace: team\ntasks:\n" + LOG
        + "triggers:\n  - id: on-end\n    type: io.kestra.plugin.core.trigger.Flow\n"
        + "    conditions:\n      - type: io.kestra.plugin.core.condition.ExecutionFlow\n"
        + "        namespace: team\n        flowId: plain\n"
    )  # fmt: skip
    (tmp_path / "c-invalid.yaml").write_text("id: invalid\nnamespace: team\ntasks:\n  - id: t\n    type: Nope\n")
    catalog = FlowCatalog(tmp_path)
    assert [flow.id for flow in catalog.listeners()] == ["listener"]
    assert sorted(key[1] for key in catalog._flows) == ["listener"]  # the others read, not validated
    assert catalog.get("team", "plain") is not None
    assert [path.name for path in catalog.unreadable] == ["c-invalid.yaml"]


def test_of_two_files_with_the_same_flow_the_first_valid_one_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("id: same\nnamespace: team\ntasks:\n  - id: t\n    type: Nope\n")
    (tmp_path / "b.yaml").write_text("id: same\nnamespace: team\ntasks:\n" + LOG)
    (tmp_path / "c.yaml").write_text("id: same\nnamespace: team\ntasks:\n  - id: other\n    type: Nope\n")
    catalog = FlowCatalog(tmp_path)
    found = catalog.get("team", "same")
    assert found is not None and found.tasks[0].id != "t"
    assert sorted(path.name for path in catalog.unreadable) == ["a.yaml", "c.yaml"]


def with_trigger(flow_id: str) -> str:
    """A flow that starts when a flow ends (a Flow trigger)."""
    return (f"id: {flow_id}\nnamespace: team\ntasks:\n" + LOG
            + "triggers:\n  - id: on-end\n    type: io.kestra.plugin.core.trigger.Flow\n")  # fmt: skip


def test_a_run_that_ends_parses_no_file_that_cannot_hold_a_trigger(tmp_path: Path) -> None:
    for n in range(30):  # a project's folder: manifests and CI files beside the flows
        (tmp_path / f"manifest-{n:02d}.yaml").write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: m{n}\n")
    (tmp_path / "plain.yaml").write_text("id: plain\nnamespace: team\ntasks:\n" + LOG)
    (tmp_path / "listener.yaml").write_text(with_trigger("listener"))
    catalog = FlowCatalog(tmp_path)
    assert [flow.id for flow in catalog.listeners()] == ["listener"]
    assert len(catalog._texts) == 31  # read, not parsed: the manifests and the flow without triggers
    assert catalog.get("team", "plain") is not None
    assert len(catalog.unreadable) == 30  # asked for, every file is parsed and named
    assert len(catalog._texts) == 0


def test_a_flow_whose_id_its_file_spells_with_an_escape_is_still_found(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text('id: "\\x63hild"\nnamespace: team\ntasks:\n' + LOG)
    found = FlowCatalog(tmp_path).get("team", "child")
    assert found is not None and found.id == "child"


def test_a_flow_with_triggers_in_a_later_file_than_a_valid_copy_without_is_not_a_listener(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("id: same\nnamespace: team\ntasks:\n" + LOG)
    (tmp_path / "b.yaml").write_text(with_trigger("same"))
    catalog = FlowCatalog(tmp_path)
    assert catalog.listeners() == []  # the first valid file (a.yaml) is the flow, as a lookup finds it
    found = catalog.get("team", "same")
    assert found is not None and not found.triggers


def test_a_fifo_or_a_broken_link_in_the_flows_folder_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text("id: child\nnamespace: team\ntasks:\n" + LOG)
    os.mkfifo(tmp_path / "pipe.yaml")  # opening it to read would wait for a writer forever
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    catalog = FlowCatalog(tmp_path)
    done = threading.Thread(target=lambda: catalog.unreadable, daemon=True)
    done.start()
    done.join(30)
    assert not done.is_alive(), "the catalog blocked reading a FIFO"
    assert catalog.get("team", "child") is not None
    assert catalog.unreadable == {}
