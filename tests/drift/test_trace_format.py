"""The trace format: what `record` writes is valid against the packaged schema, holds no secret, and
anything else handed to `drift` is refused in one line with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.drift.trace import VERSION, TraceWriter, make_header, problem, read_trace
from harness.resources import TRACE_SCHEMA
from mock_server import resources as mock_resources

PLAN = {"cycles": 1, "inferences": 1, "max_tokens": 8, "max_allocations": 2, "pools": None}


def _record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": "request",
        "seq": 0,
        "t": 0.1,
        "step": "allocate",
        "operation": "createAllocation",
        "method": "POST",
        "status": 201,
        "error_code": None,
        "transport_error": None,
        "headers": {
            "content_type": "application/json",
            "request_id": True,
            "location": True,
            "retry_after": None,
            "idempotent_replayed": None,
        },
        "shape": ["allocation_id:string"],
        "timings": {"total_ms": 1.5},
        "pool_id": "gpu-pool-2",
        "model": "gemma-270m",
        "gpu_type": "L4-24GB",
    }
    record.update(changes)
    return record


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_both_packages_read_the_one_schema_and_ship_it() -> None:
    assert TRACE_SCHEMA.is_file()
    assert TRACE_SCHEMA == mock_resources.TRACE_SCHEMA
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"contracts/drift-trace.v1.schema.json" = "harness/_contracts/drift-trace.v1.schema.json"' in pyproject
    assert '"contracts" = "mock_server/_contracts"' in pyproject


def test_a_written_trace_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    with path.open("w") as stream:
        writer = TraceWriter(
            stream, make_header(target_url="https://user:pw@api.example:8443/v1?k=1", seed=3, probe=PLAN)
        )
        writer.write(_record())
    trace = read_trace(path)
    assert trace.header["target"] == "api.example:8443"  # the host only: no credential, path or query
    assert trace.header["version"] == VERSION
    assert trace.header["seed"] == 3
    assert trace.records == [_record()]


def test_the_writer_refuses_an_invalid_record(tmp_path: Path) -> None:
    with (tmp_path / "t.jsonl").open("w") as stream:
        writer = TraceWriter(stream, make_header(target_url="http://127.0.0.1:1", seed=0, probe=PLAN))
        with pytest.raises(ValueError, match="status"):
            writer.write(_record(status="201"))


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ({"kind": "request"}, "required"),
        (_record(headers={"request_id": True}), "headers"),
        (_record(shape=["allocation_id"]), "shape"),
        (_record(authorization="Bearer x"), "Additional properties"),
        ([1, 2], "not a trace line"),
    ],
)
def test_a_bad_line_is_named(line: Any, fragment: str) -> None:
    why = problem(line)
    assert why is not None
    assert fragment in why


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    return err


def test_drift_refuses_a_malformed_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"kind": "header", "format": "hostedai-drift-trace", "version": 1\n')
    assert "line 1 is not JSON" in _one_line_exit_2(["drift", "--trace", str(path)], capsys)


def test_drift_refuses_a_trace_of_another_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = make_header(target_url="http://127.0.0.1:1", seed=0, probe=PLAN) | {"version": 2}
    path = _write(tmp_path / "t.jsonl", [header, _record()])
    err = _one_line_exit_2(["drift", "--trace", str(path)], capsys)
    assert "format version 2, this tool reads version 1" in err


def test_drift_refuses_what_is_not_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "t.jsonl", [{"hello": "world"}])
    assert "not a hostedai-drift-trace file" in _one_line_exit_2(["drift", "--trace", str(path)], capsys)


def test_drift_names_the_bad_record_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = make_header(target_url="http://127.0.0.1:1", seed=0, probe=PLAN)
    path = _write(tmp_path / "t.jsonl", [header, _record(), _record(method="FETCH")])
    assert "line 3: method" in _one_line_exit_2(["drift", "--trace", str(path)], capsys)


def test_drift_refuses_a_missing_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot read it" in _one_line_exit_2(["drift", "--trace", str(tmp_path / "none.jsonl")], capsys)


def test_record_refuses_an_unreachable_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", "k")
    argv = ["record", "--target", "http://127.0.0.1:1", "--out", str(tmp_path / "t.jsonl")]
    assert "cannot reach http://127.0.0.1:1" in _one_line_exit_2(argv, capsys)
    assert not (tmp_path / "t.jsonl").exists()


def test_record_refuses_a_missing_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOSTED_AI_API_KEY", raising=False)
    argv = ["record", "--target", "http://127.0.0.1:1", "--out", str(tmp_path / "t.jsonl")]
    assert "HOSTED_AI_API_KEY" in _one_line_exit_2(argv, capsys)
