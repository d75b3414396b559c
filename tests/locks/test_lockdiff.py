"""The drift function: what update-locks prints is exactly what changed."""

from __future__ import annotations

from support.lockdata import REV_B, valid_models, valid_nodes

from bake.locks.diff import diff_locks, format_diff
from bake.locks.models import parse_models_lock
from bake.locks.nodes import GitPin, parse_nodes_lock


def test_identical_locks_have_no_diff():
    assert not diff_locks(parse_nodes_lock(valid_nodes()), parse_nodes_lock(valid_nodes()))


def test_a_node_update_shows_rev_date_and_requirement_lines():
    old = parse_nodes_lock(valid_nodes())
    pin = old.get("comfyui").locked
    new = old.with_pin(
        "comfyui",
        GitPin(REV_B, "2026-02-01T00:00:00+00:00", None, ("torch", "numpy>=2.0", "requests")),
    )
    diff = diff_locks(old, new)
    change = diff.changed_entry("comfyui")
    assert change is not None
    assert change.get("locked.rev").old == pin.rev and change.get("locked.rev").new == REV_B
    lines = format_diff(diff)
    assert lines[0] == "~ comfyui"
    assert "    locked.rev: aaaaaaaaaaaa -> bbbbbbbbbbbb" in lines
    assert "    locked.requirements: + numpy>=2.0" in lines
    assert "    locked.requirements: + requests" in lines
    assert "    locked.requirements: - numpy>=1.25.0" in lines
    assert not diff.added and not diff.removed


def test_added_and_removed_entries_are_named():
    old = parse_models_lock(valid_models())
    data = valid_models()
    del data["models"]["rife47"]
    data["models"]["new_lora"] = {
        "original": {"source": "url", "url": "https://example.invalid/l.safetensors"},
        "dest": "models/loras/l.safetensors",
    }
    diff = diff_locks(old, parse_models_lock(data))
    assert diff.added == ("models.new_lora",)
    assert diff.removed == ("models.rife47",)
    assert "+ models.new_lora (new)" in format_diff(diff)


def test_locking_an_entry_for_the_first_time_shows_every_new_field():
    data = valid_models()
    old = parse_models_lock(data)
    data["models"]["rife47"]["locked"] = {"size": 10, "blake3": "e" * 64, "sha256": "f" * 64}
    fields = {f.field: f for f in diff_locks(old, parse_models_lock(data)).changed[0].fields}
    assert set(fields) == {"locked.size", "locked.blake3", "locked.sha256"}
    assert fields["locked.size"].old is None and fields["locked.size"].new == 10
    assert "    locked.size: (none) -> 10" in format_diff(diff_locks(old, parse_models_lock(data)))
