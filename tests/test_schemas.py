"""The versioned schemas of the files samrefiner writes and reads back."""

from __future__ import annotations

import json

import pytest

from samrefiner.io.schema import SchemaError
from samrefiner.io.sidecar import RefineSidecar, SidecarMask
from samrefiner.runner.journal.records import ImageRecord, ObjectRecord
from samrefiner.runner.journal.state import RunState, StateError


def test_sidecar_round_trip_and_versions() -> None:
    sidecar = RefineSidecar(
        "a.jpg",
        "sam_vit_b",
        {"iterations": 2},
        [SidecarMask("m.png", "out/m.png", "refined", 0.9, 2, None)],
        {"encoder": 0.5},
        1.25,
    )
    data = json.loads(json.dumps(sidecar.to_json()))
    assert data["kind"] == "refine" and data["version"] == 1
    assert RefineSidecar.from_json(data) == sidecar
    legacy = {k: v for k, v in data.items() if k not in ("kind", "version")}
    assert RefineSidecar.from_json(legacy) == sidecar  # written before versions
    with pytest.raises(SchemaError, match="newer than this samrefiner reads"):
        RefineSidecar.from_json({**data, "version": 2})
    with pytest.raises(SchemaError, match="masks"):
        RefineSidecar.from_json({k: v for k, v in data.items() if k != "masks"})


def test_state_records_are_versioned(tmp_path) -> None:
    state = RunState(tmp_path / "out")
    state.start({"case": 1}, resume=False)
    record = ImageRecord("k", [ObjectRecord(1, "refined", 0.9, 0.8, 2, kept_share=0.75)])
    state.write(record)
    path = next((state.dir / "done").glob("*.json"))
    data = json.loads(path.read_text())
    assert data["kind"] == "image_record" and data["version"] == 1
    assert state.read("k") == record
    run = json.loads((state.dir / "run.json").read_text())
    assert run["kind"] == "run_state" and run["case"] == 1
    path.write_text(json.dumps({**data, "version": 7}))
    with pytest.raises(StateError, match="newer than this samrefiner reads"):
        state.read("k")


def test_sidecar_and_records_keep_box_zoom_and_gate_fields() -> None:
    box = SidecarMask(
        "box [1.0, 2.0, 30.0, 40.0]",
        "out/a-box1.png",
        "kept_coarse",
        0.3,
        1,
        None,
        box=[1.0, 2.0, 30.0, 40.0],
        zoomed=True,
        gate_reason="low_score",
    )
    plain = SidecarMask("m.png", "out/m.png", "refined", 0.9, 2, None)
    sidecar = RefineSidecar("a.jpg", "sam_vit_b", {}, [box, plain])
    data = json.loads(json.dumps(sidecar.to_json()))
    assert RefineSidecar.from_json(data) == sidecar
    assert data["masks"][0]["box"] == [1.0, 2.0, 30.0, 40.0]
    assert not {"box", "zoomed", "gate_reason"} & set(data["masks"][1])  # default runs: as before
    record = ImageRecord(
        "k",
        [
            ObjectRecord(1, "kept_coarse", 0.3, None, 1, gate_reason="moved", from_box=True),
            ObjectRecord(2, "refined", 0.9, 0.8, 2, zoomed=True),
        ],
    )
    again = ImageRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record
    with pytest.raises(ValueError, match="a reason goes with 'kept_coarse' only"):
        ObjectRecord(3, "refined", gate_reason="moved")
