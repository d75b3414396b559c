"""A node's license, as its tree states it: recorded by `update-locks --nodes`, shown in the
diff when it changes, and warned about by `bake check` when it restricts commercial use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support import real_comfyui

from bake.locks.licenses import read_license
from bake.locks.nodes import load_nodes_lock
from bake.nodes.resolve import update_nodes

ROOT = Path(__file__).resolve().parents[2]

MIT = """MIT License

Copyright (c) 2023 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
"""
# What RES4LYF's LICENSE does: a clause in front of the AGPL's own text.
RESTRICTED = """The use of this software or any derivative work for the purpose of
providing a commercial service, such as (but not limited to) an
AI image generation service, is strictly prohibited without obtaining
permission and/or a separate commercial license from the copyright holder.
This includes any service that charges users directly or indirectly.

                        GNU AFFERO GENERAL PUBLIC
                       Version 3, 19 November 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>
 Everyone is permitted to copy and distribute verbatim copies
 of this license document, but changing it is not allowed.

  13. Remote Network Interaction; Use with the GNU General Public License.
  alternative is allowed only occasionally and noncommercially, and
"""
GPL3 = """                    GNU GENERAL PUBLIC LICENSE
                       Version 3, 29 June 2007

 Copyright (C) 2007 Free Software Foundation, Inc. <https://fsf.org/>

  13. Use with the GNU Affero General Public License.
    alternative is allowed only occasionally and noncommercially, and
is a consumer product regardless of whether the product has substantial
commercial, industrial or non-consumer uses, unless such uses represent
"""


def _update(lock: Path, *names: str, check: bool = False) -> tuple[int, list[str]]:
    lines: list[str] = []
    return update_nodes(lock, names, check=check, out=lines.append), lines


def test_update_records_each_license_and_shows_a_relicensing_in_the_diff(remotes, tmp_path):
    kj = remotes.nodes["ComfyUI-KJNodes"]
    kj.commit({"LICENSE": MIT}, "license")
    remotes.comfy.commit({"COPYING": GPL3}, "license")
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    code, lines = _update(lock)
    assert code == 0, lines
    pinned = load_nodes_lock(lock)
    assert pinned.custom_nodes["ComfyUI-KJNodes"].locked.license.spdx == "MIT"
    assert pinned.comfyui.locked.license.spdx == "GPL-3.0"
    assert pinned.comfyui.locked.license.file == "COPYING"
    # a node without a license file is recorded as such (an empty mapping), not left out
    easy = pinned.custom_nodes["ComfyUI-Easy-Use"].locked.license
    assert easy is not None and easy.file is None
    assert "license: {}" in lock.read_text()

    # upstream adds a commercial-service clause in front of the license
    kj.commit({"LICENSE": RESTRICTED}, "relicense")
    code, lines = _update(lock, "ComfyUI-KJNodes")
    assert code == 0, lines
    assert "    locked.license.spdx: MIT -> AGPL-3.0" in lines
    assert any(
        line.startswith("    locked.license.restriction: (none) -> The use of this software")
        for line in lines
    ), lines

    # `bake check` passes (a license is the operator's call) but names the node and the clause
    result = subprocess.run(
        [sys.executable, "-m", "bake", "check", "--lock", str(lock)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "locked.license" in line]
    assert len(warning) == 1, result.stderr
    assert "custom_nodes.ComfyUI-KJNodes" in warning[0]
    assert "commercial service" in warning[0] and "permission" in warning[0]


def test_check_mode_reports_a_license_the_lock_does_not_match(remotes, tmp_path):
    kj = remotes.nodes["ComfyUI-KJNodes"]
    kj.commit({"LICENSE": RESTRICTED}, "license")
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    assert _update(lock)[0] == 0
    # someone edits the restriction out of the lock by hand
    text = lock.read_text()
    start = text.index("        restriction:")
    end = text.index("\n", start) + 1
    lock.write_text(text[:start] + text[end:])
    code, lines = _update(lock, "ComfyUI-KJNodes", check=True)
    assert code == 1
    assert any(
        "locked.license is AGPL-3.0 but the tree" in line and "AGPL-3.0 with added terms" in line
        for line in lines
    ), lines


def test_license_texts_are_recognised_without_taking_the_gpl_for_a_restriction(tmp_path):
    for name, text, spdx, restricted in (
        ("mit", MIT, "MIT", False),
        ("gpl", GPL3, "GPL-3.0", False),
        ("res", RESTRICTED, "AGPL-3.0", True),
    ):
        tree = tmp_path / name
        tree.mkdir()
        (tree / "LICENSE.md").write_text(text)
        found = read_license(tree)
        assert (found.file, found.spdx, found.restricted) == ("LICENSE.md", spdx, restricted)
    found = read_license(tmp_path / "res")
    assert found.restriction.startswith("The use of this software or any derivative work")
    assert found.restriction.endswith("from the copyright holder.")

    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "LICENSE").write_text("Custom terms\n\nFree for non-commercial use only.\n")
    found = read_license(odd)
    assert found.spdx is None
    assert found.text == "Custom terms\nFree for non-commercial use only."
    assert found.restriction == "Free for non-commercial use only."


@pytest.mark.real_comfyui
def test_the_real_locked_trees_name_res4lyf_alone_as_restricted():
    src, _ = real_comfyui.source_and_interpreter()
    found = {"ComfyUI": read_license(src / "ComfyUI")}
    for tree in sorted((src / "custom_nodes").iterdir()):
        found[tree.name] = read_license(tree)
    assert found["ComfyUI"].spdx == "GPL-3.0"
    assert found["RES4LYF"].spdx == "AGPL-3.0"
    assert "commercial service" in found["RES4LYF"].restriction
    assert sorted(name for name, lic in found.items() if lic.restricted) == ["RES4LYF"]
    assert all(lic.spdx for lic in found.values())
    # the committed lock records what these trees hold
    lock = load_nodes_lock(ROOT / "nodes.lock.yaml")
    for entry in lock.entries():
        if entry.kind != "source_build" and entry.name in found:
            assert entry.locked.license == found[entry.name], entry.name
