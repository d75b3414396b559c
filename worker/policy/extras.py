"""Extra inputs a class's reviewed rules declare beyond its /object_info inputs.

VideoHelperSuite's VHS_VideoCombine declares its hidden inputs with a dict that claims every
key, and hands each extra key to its format: the format's widgets (worker.policy.vhs). Those
are the only extra keys the worker lets through, each checked like a declared input; what VHS
keeps for itself (worker.policy.vhs.RESERVED) never is. A STRING widget is accepted only at
its default: every place a widget's value goes is ffmpeg's argv or a filter graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker.policy.inputs import Declaration, unwrap
from worker.policy.vhs import RESERVED, format_inputs_from_object_info

VIDEO_COMBINE = "VHS_VideoCombine"

ExtraInputs = Callable[[str, Mapping[str, Any]], Mapping[str, Declaration] | None]


def _as_checked(decl: Declaration) -> Declaration:
    if decl[0] == "STRING":  # only its default: a one-option combo
        opts = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
        return [[opts.get("default", "")], {}]
    return decl


def vhs_extra_inputs(object_info: Mapping[str, Any]) -> ExtraInputs:
    """The extra inputs of VHS_VideoCombine for the format a node chose, from what the running
    VHS published in /object_info."""
    formats = {
        name: {k: _as_checked(d) for k, d in declared.items() if k not in RESERVED}
        for name, declared in format_inputs_from_object_info(object_info).items()
    }

    def extras(class_type: str, inputs: Mapping[str, Any]) -> Mapping[str, Declaration] | None:
        if class_type != VIDEO_COMBINE:
            return None
        chosen = unwrap(inputs.get("format"))
        return formats.get(chosen) if isinstance(chosen, str) else None

    return extras
