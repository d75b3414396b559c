"""VideoHelperSuite's VHS_VideoCombine: the per-format inputs a job may give it, and their check.

VHS_VideoCombine declares its hidden inputs as a `ContainsAll` dict (it claims to hold every
key), so ComfyUI hands ANY extra key of the job's node to `combine_video(**kwargs)`, unchecked:
ComfyUI validates only `required`/`optional` inputs. The per-format widgets travel that way.
`apply_format_widgets` puts their values into the format's argument lists (`main_pass`,
`pre_pass`, `inputs_main_pass`, `audio_pass`: ffmpeg's argv; `gifski_pass`: gifski's argv) or
top-level keys (`bitrate`, `save_metadata`, ...) of the format file, as `str(value)`, whole or
through a `string.Template`.

The attack at the locked commit: `dither` of `video/ffmpeg-gif`. ffmpeg-gif.json declares it
as a combo (bayer, ..., none) with the template
`[0:v] split [a][b]; [a] palettegen=... [p]; [b][p] paletteuse=dither=$val`, the value of
`-filter_complex`. The combo is never checked, so a job with `"format": "video/ffmpeg-gif"` and
`"dither": "bayer,drawtext=textfile=/etc/passwd;movie=filename=<URL, colons escaped>,nullsink"`
has ffmpeg draw a local file's text into the GIF it returns and open the URL (reproduced with
VHS's own `apply_format_widgets` and the ffmpeg of imageio-ffmpeg: the text is in the frames,
the HTTP GET arrives).
It is the only widget of the locked formats whose value reaches a filter graph
(FILTER_GRAPH_WIDGETS); every other one is a whole argv element after its option (`-pix_fmt`,
`-crf`, `-level`, `-coder`, `-context`, `-g`, `-slices`, `-slicecrc`, `-profile:v`, gifski's
`-Q`, `-b:v` for `bitrate`) or a top-level key VHS only compares (`save_metadata`,
`trim_to_audio`, `megabit`, `input_color_depth`). `manual_format_widgets` (a dict a job can set
too: `kwargs.update(...)`) reaches the same places under any name.

The rule here is default-deny: an extra key is accepted only when the chosen format declares it
(exactly the widget lists VHS builds with `iterate_format(for_widgets=True)`, which VHS also
publishes in /object_info: `input.required.format[1]["formats"]`), and its value only when it is
a literal that fits the declaration: a combo value is one of the options (so `dither` is one of
nine words), INT/FLOAT numbers within min/max, BOOLEAN a bool, and STRING (none in the locked
formats, see STRING_WIDGETS) only the default the format file declares.

Where the declarations come from: /object_info carries them (`format_inputs_from_object_info`),
and that is the better source: it is what the running VHS built (with or without gifski, with
any user format folder), with the same code that fills the defaults. `format_inputs` reads the
format files instead (tests and audits; the worker does not need VHS's source for it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from string import Template
from typing import Any

CLASS_TYPE = "VHS_VideoCombine"

# The formats VideoCombine.INPUT_TYPES lists before the files' `video/<name>`: Pillow writes
# them; image/webp's one widget is built in (`kwargs.get("lossless", True)`), image/gif has none.
IMAGE_FORMATS: dict[str, dict[str, list]] = {
    "image/gif": {},
    "image/webp": {"lossless": ["BOOLEAN", {"default": True}]},
}

# combine_video's own keyword arguments outside INPUT_TYPES' required/optional, and the key it
# sets itself. Never an accepted extra, whatever a format declares:
# - manual_format_widgets: a dict merged into the widget values (the same sinks, any name);
# - latents: replaces `images`;
# - prompt / extra_pnginfo / unique_id: the hidden inputs (ComfyUI overwrites them with its
#   own values, so a job's are dropped, but a job has no business sending them);
# - has_alpha: set by combine_video from the frames before the format is applied.
RESERVED: frozenset[str] = frozenset(
    {"manual_format_widgets", "latents", "prompt", "extra_pnginfo", "unique_id", "has_alpha"}
)

# Widgets whose value VHS puts inside an ffmpeg filter graph, (format, widget) -> how. The test
# derives this set from the real format files and fails when it changes; each must be a combo,
# so that the exact-option rule confines it.
FILTER_GRAPH_WIDGETS: dict[tuple[str, str], str] = {
    ("video/ffmpeg-gif", "dither"): "substituted for $val in the -filter_complex graph "
    "(`... paletteuse=dither=$val`): free text there adds filters (drawtext=textfile= reads a "
    "file into the frames, movie= opens any file or URL)",
}

# STRING widgets of the locked formats, (format, widget) -> what VHS does with the value. None
# at the locked commit. Rule for any STRING widget: only its declared default (VHS's own
# fallback, "", without one) is accepted. Every place a format widget can go is ffmpeg's or
# gifski's argv, a filter graph, or a format key such as `extension` (the output file's name);
# even a "harmless" token can pick a muxer, an encoder or a file in ffmpeg's working folder, so
# free text is refused rather than patterned. The test fails when a STRING widget appears.
STRING_WIDGETS: dict[tuple[str, str], str] = {}

# ffmpeg options whose value is a filter graph (and any -filter*, -/<option>: read from a file).
FILTER_OPTIONS = frozenset({"-vf", "-af", "-lavfi", "-filter_complex"})

# The type of a name the same format declares twice, differently: no value is accepted.
CONFLICT = "VHS_CONFLICTING_DECLARATIONS"


def is_link(value: Any) -> bool:
    """A link `["<node id>", <output index>]`, as ComfyUI recognises one."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _is_widget(item: Any) -> bool:
    """iterate_format's test for a widget: a list of 2+ items whose second is not a mapping."""
    return isinstance(item, list) and len(item) > 1 and not isinstance(item[1], dict)


def vhs_widgets(video_format: Mapping[str, Any]) -> Iterator[list]:
    """The widgets of one format file, as VHS's `iterate_format(video_format)` yields them:
    `extra_widgets` whole, each widget item of a `*_pass` list, and each top-level key whose
    value is a widget. Nothing nested deeper is a widget (neither `[["$name"]]` templates nor
    `["name", {key: args}]` mappings or their values)."""
    for key, value in video_format.items():
        if key == "extra_widgets":
            if isinstance(value, list):
                yield from value
        elif key.endswith("_pass"):
            if isinstance(value, list):
                yield from (item for item in value if _is_widget(item))
        elif _is_widget(value):
            yield value


def declaration(widget: Any) -> tuple[str, list] | None:
    """(name, object_info-style declaration) of one VHS widget, or None if it is malformed
    (then it declares nothing, and a job's value for it is refused as undeclared).

    `["crf", "INT", {...}]` -> ["INT", {...}]; `["pix_fmt", ["a", "b"]]` -> [["a", "b"], {}];
    `["dither", [...], {...}, "template $val"]` -> [[...], {...}] (the template is how VHS
    uses the value, not part of what is accepted)."""
    if not isinstance(widget, list) or len(widget) < 2 or not isinstance(widget[0], str):
        return None
    name, kind = widget[0], widget[1]
    opts = dict(widget[2]) if len(widget) > 2 and isinstance(widget[2], dict) else {}
    if isinstance(kind, list):
        return name, [list(kind), opts]
    if isinstance(kind, str):
        return name, [kind, opts]
    return None


def declarations(widgets: Iterable[Any]) -> dict[str, list]:
    """name -> declaration for a format's widgets (a name declared twice differently is
    marked CONFLICT: no value satisfies it)."""
    declared: dict[str, list] = {}
    for widget in widgets:
        found = declaration(widget)
        if found is None:
            continue
        name, decl = found
        if name in declared and declared[name] != decl:
            declared[name] = [CONFLICT, {}]
        else:
            declared[name] = decl
    return declared


def format_files(vhs_dir: Path) -> dict[str, Path]:
    """`video/<name>` -> `video_formats/<name>.json` of a VideoHelperSuite folder."""
    folder = Path(vhs_dir) / "video_formats"
    return {
        "video/" + path.name[: -len(".json")]: path
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name.endswith(".json")
    }


def load_format(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def format_inputs(vhs_dir: Path, *, gifski: bool = False) -> dict[str, dict[str, list]]:
    """Every value of VHS_VideoCombine's `format` combo and the extra inputs it declares, read
    from the format files as VHS's `get_video_formats` does.

    The list does not depend on ffmpeg (VHS lists the video formats without it and fails at
    run time), but a format with a `gifski_pass` is listed only where gifski is found (VHS_GIFSKI,
    JOV_GIFSKI or `gifski` on PATH): pass `gifski` accordingly (the worker's image has none).
    User format folders (folder_paths' `VHS_video_formats`, empty unless extra_model_paths adds
    one; the worker adds none) are not read here; /object_info has them."""
    formats: dict[str, dict[str, list]] = {
        name: {key: list(decl) for key, decl in declared.items()}
        for name, declared in IMAGE_FORMATS.items()
    }
    for name, path in format_files(vhs_dir).items():
        video_format = load_format(path)
        if "gifski_pass" in video_format and not gifski:
            continue
        formats[name] = declarations(vhs_widgets(video_format))
    return formats


def _node_entry(info: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if CLASS_TYPE in info:
        return info[CLASS_TYPE]
    return info if "input" in info else None


def format_inputs_from_object_info(info: Mapping[str, Any]) -> dict[str, dict[str, list]]:
    """The same table from /object_info (the whole answer or VHS_VideoCombine's entry): the
    `format` combo's options, each with the widgets VHS published for it in the combo's extra
    info (`{"formats": {format: [widget, ...]}}`; a format without widgets has no entry).
    Empty if VHS_VideoCombine is not there."""
    entry = _node_entry(info)
    if entry is None:
        return {}
    spec = entry.get("input", {}).get("required", {}).get("format")
    if not isinstance(spec, list) or not spec:
        return {}
    extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(spec[0], list):
        options = spec[0]
    elif spec[0] == "COMBO":
        options = extra.get("options", [])
    else:
        return {}
    widgets = extra.get("formats", {})
    if not isinstance(widgets, dict):
        widgets = {}
    return {
        name: declarations(widgets.get(name) or []) for name in options if isinstance(name, str)
    }


def _template_names(text: str) -> list[str]:
    names = []
    for match in Template.pattern.finditer(text):
        name = match.group("named") or match.group("braced")
        if name:
            names.append(name)
    return names


def widget_uses(video_format: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Where VHS's `apply_format_widgets` puts each value a format reads from the job:
    (name, kind, detail), kind one of "filter" (inside a filter graph), "argv" (a whole or
    templated element of ffmpeg's or gifski's arguments), "select" (a mapping key choosing
    fixed arguments), "key" (a top-level format key combine_video reads). Mappings and
    `$name` templates are followed, as apply_format_widgets follows them."""
    uses: list[tuple[str, str, str]] = []

    def kind_after(option: str | None) -> str:
        if option is None:
            return "argv"
        name = option.split(":")[0]
        filters = name in FILTER_OPTIONS or name.startswith(("-filter", "-/"))
        return "filter" if filters else "argv"

    def walk(items: list, where: str, option: str | None = None) -> None:
        for item in items:
            sink(item, where, option)
            option = item if isinstance(item, str) and item.startswith("-") else None

    def sink(item: Any, where: str, option: str | None) -> None:
        after = f"{where}: value of {option}" if option else f"{where}: an argument"
        if isinstance(item, str):
            for name in _template_names(item):
                uses.append((name, kind_after(option), f"{after} ($-template)"))
        elif isinstance(item, list) and len(item) == 1 and isinstance(item[0], list):
            walk(item[0], where, option)
        elif isinstance(item, list) and len(item) > 1 and isinstance(item[0], str):
            name = item[0]
            if isinstance(item[1], dict):
                uses.append((name, "select", f"{where}: picks one of {sorted(item[1])}"))
                for value in item[1].values():
                    sink(value, where, option)
            elif len(item) > 3 and isinstance(item[3], str):
                uses.append((name, kind_after(option), f"{after} (template {item[3]!r})"))
            else:
                uses.append((name, kind_after(option), after))

    for key, value in video_format.items():
        if key == "extra_widgets":
            continue
        if key.endswith("_pass") and isinstance(value, list):
            walk(value, "gifski" if key == "gifski_pass" else f"ffmpeg {key}")
        elif isinstance(value, list) and len(value) > 1 and isinstance(value[0], str):
            uses.append((value[0], "key", f"format key {key!r}"))
    return uses


def _options(decl: list) -> list | None:
    if isinstance(decl[0], list):
        return decl[0]
    if decl[0] == "COMBO" and len(decl) > 1 and isinstance(decl[1], dict):
        options = decl[1].get("options")
        return options if isinstance(options, list) else None
    return None


def _number_problem(value: Any, opts: Mapping[str, Any], integer: bool) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be an integer" if integer else "must be a number"
    if integer and not isinstance(value, int):
        return "must be an integer"
    if not math.isfinite(value):
        return "must be finite"
    low, high = opts.get("min"), opts.get("max")
    if isinstance(low, int | float) and value < low:
        return f"is below the minimum {low}"
    if isinstance(high, int | float) and value > high:
        return f"is above the maximum {high}"
    return None


def value_problem(value: Any, decl: list) -> str | None:
    """Why `value` does not fit `decl` (an object_info-style declaration), or None."""
    if not isinstance(decl, list) or not decl:
        return "has no usable declaration"
    opts = decl[1] if len(decl) > 1 and isinstance(decl[1], dict) else {}
    options = _options(decl)
    if options is not None:
        # the same type as well as equal: True == 1 == 1.0 in Python
        if any(type(value) is type(o) and value == o for o in options):
            return None
        return f"must be one of {options}"
    kind = decl[0]
    if kind == "INT":
        return _number_problem(value, opts, integer=True)
    if kind == "FLOAT":
        return _number_problem(value, opts, integer=False)
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else "must be true or false"
    if kind == "STRING":
        default = opts.get("default", "")
        if isinstance(value, str) and value == default:
            return None
        return (
            f"is free text that VHS passes to ffmpeg; only the format's default {default!r} "
            "is accepted"
        )
    if kind == CONFLICT:
        return "is declared more than once, differently, by the format"
    return f"has type {kind!r}, which this policy cannot check"


def check_format_inputs(
    format_name: str, extra: dict[str, Any], declared: dict[str, list]
) -> list[str]:
    """Problems (empty: fine) with the keys a job gives a VHS_VideoCombine node beyond its
    declared inputs, for the chosen `format_name`, whose widgets are `declared` (one entry of
    `format_inputs` / `format_inputs_from_object_info`; a format missing there declares
    nothing). A key the format does not declare is refused, as is any link (a computed value
    cannot be checked) and any value that does not fit its declaration."""
    problems: list[str] = []
    for key, value in extra.items():
        where = f"VHS_VideoCombine format {format_name!r}, input {key!r}"
        if key in RESERVED:
            problems.append(f"{where}: not a format input; a job may not set it")
            continue
        decl = declared.get(key)
        if decl is None:
            problems.append(f"{where}: the format declares no such input")
            continue
        if is_link(value):
            problems.append(f"{where}: must be a literal value, not a link (got {value!r})")
            continue
        problem = value_problem(value, decl)
        if problem is not None:
            problems.append(f"{where}: {value!r} {problem}")
    return problems
