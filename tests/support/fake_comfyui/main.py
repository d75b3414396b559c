"""A fake ComfyUI server for tests: the real HTTP and websocket API on loopback, no torch.

Started exactly as ComfyUI is (`$COMFYUI_PYTHON $COMFYUI_DIR/main.py --listen H --port P ...`);
it keeps input/, output/, temp/ and models/ beside this file, like ComfyUI. It reproduces the
routes, message order, history shape, validation error shapes, execution errors, interrupts,
the node output cache and VideoHelperSuite's `gifs` outputs recorded from a real server. Node
classes and their inputs come from the real server's /object_info (object_info.json.gz beside
this file). A handful of nodes really run (LoadImage, ImageInvert, ImageScale, SaveImage,
PreviewImage, VHS_VideoCombine, the samplers' progress); any other class passes its inputs
through as placeholders.

Test hooks, none of which a real server has:
- node classes `FakeCrash` (the process exits mid-prompt), `FakeHang` (runs for `seconds`,
  0 = until interrupted) and `FakeIgnoreInterrupt` (sleeps `seconds` and ignores interrupts);
- env FAKE_COMFYUI_START_DELAY (seconds before binding), FAKE_COMFYUI_EXIT_AT_START (exit code
  after logging a failure), FAKE_COMFYUI_FAIL_IF_EXISTS (a path: fail to start while it exists,
  to make a restart fail), FAKE_COMFYUI_STEP_DELAY (seconds per sampler step),
  FAKE_COMFYUI_REFUSE_WS (refuse websocket connections from the start);
- for benchmarks: FAKE_COMFYUI_START_BUSY (seconds of CPU work on one core before binding, as
  a real ComfyUI spends importing torch and the nodes) and FAKE_COMFYUI_READ_MODELS=1 (a
  prompt first reads, in full, every model file its loader inputs name, once per process, as
  ComfyUI loads the weights);
- GET /fake/stats: request counts per route, websocket connections and disconnects, for
  asserting what a client did; GET /fake/sockets: the clientIds that receive messages;
- POST /fake/block {"route": "GET /history/{id}"} makes that route (named as in /fake/stats)
  hang until POST /fake/unblock {"route": ...}; with "status": 503 it answers that status at
  once instead (for "GET /ws": websocket connections are refused);
- POST /fake/release makes a running `FakeHang` with `seconds` 0 finish as a success;
- GET /fake/env: the process's environment, to assert what the worker handed ComfyUI;
- POST /fake/write {"path": p, "text": t} writes a file with the process's rights and answers
  {"written": p} or {"error": "PermissionError: ..."}, for asserting what ComfyUI can write;
  POST /fake/read {"path": p} answers {"text": ...} or {"error": ...}, and POST /fake/connect
  {"port": n} opens a TCP connection to 127.0.0.1:n and answers {"connected": n} or
  {"error": ...}, for asserting what ComfyUI can read and reach.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import hashlib
import json
import mimetypes
import os
import random
import string
import sys
import time
import traceback
import uuid
from collections import Counter, deque
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web
from PIL import Image, ImageOps

HERE = Path(os.path.abspath(__file__)).parent
INPUT = HERE / "input"
OUTPUT = HERE / "output"
TEMP = HERE / "temp"
MODELS = HERE / "models"
FOLDERS = [
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "latent_upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
]
# Which folder fills the (empty in object_info) model list of a loader input.
MODEL_INPUTS = {
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("VAELoader", "vae_name"): "vae",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("LoraLoader", "lora_name"): "loras",
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
}
FOLDER_ALIASES = {"unet": "diffusion_models", "clip": "text_encoders"}
NOBODY = "\0nobody"  # routing target for events of a prompt queued without a client_id

FAKE_CLASSES: dict[str, dict[str, Any]] = {
    "FakeCrash": {
        # at_queue: die while answering POST /prompt (a prompt queued and run at once, its node
        # killing ComfyUI before the answer is out), not in the middle of the run
        "input": {
            "required": {},
            "optional": {"images": ["IMAGE"], "at_queue": ["BOOLEAN", {"default": False}]},
        },
        "output": [],
        "output_node": True,
    },
    "FakeHang": {
        "input": {
            "required": {"seconds": ["FLOAT", {"default": 0.0, "min": 0.0}]},
            "optional": {"images": ["IMAGE"]},
        },
        "output": ["IMAGE"],
        "output_node": False,
    },
    "FakeIgnoreInterrupt": {
        "input": {
            "required": {"seconds": ["FLOAT", {"default": 1.0}]},
            "optional": {"images": ["IMAGE"]},
        },
        "output": ["IMAGE"],
        "output_node": False,
    },
}

VHS_EXT = {
    "image/gif": "gif",
    "image/webp": "webp",
    "video/h264-mp4": "mp4",
    "video/h265-mp4": "mp4",
    "video/nvenc_h264-mp4": "mp4",
    "video/nvenc_hevc-mp4": "mp4",
    "video/nvenc_av1-mp4": "mp4",
    "video/webm": "webm",
    "video/av1-webm": "webm",
    "video/ProRes": "mov",
    "video/ffv1-mkv": "mkv",
    "video/ffmpeg-gif": "gif",
    "video/8bit-png": "png",
    "video/16bit-png": "png",
}


def log(line: str) -> None:
    print(line, flush=True)


def load_object_info() -> dict[str, Any]:
    with gzip.open(HERE / "object_info.json.gz", "rt", encoding="utf-8") as f:
        info = json.load(f)
    for name, spec in FAKE_CLASSES.items():
        info[name] = {
            **spec,
            "name": name,
            "display_name": name,
            "category": "testing",
            "python_module": "fake",
            "description": "",
            "input_order": {k: list(v) for k, v in spec["input"].items()},
            "output_is_list": [False] * len(spec["output"]),
            "output_name": list(spec["output"]),
        }
    return info


class ValidationFailed(Exception):
    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any]):
        super().__init__(error.get("message"))
        self.error = error
        self.node_errors = node_errors


class Interrupted(Exception):
    pass


class NodeFailed(Exception):
    def __init__(self, exc: BaseException):
        super().__init__(str(exc))
        self.exc = exc


def _err(type_: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details, "extra_info": extra}


class Server:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.info = load_object_info()
        self.extra_model_dirs = self._read_extra_paths(args.extra_model_paths_config or [])
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.queue: deque[tuple[int, str, dict, dict, list[str]]] = deque()
        self.running: tuple[int, str, dict, dict, list[str]] | None = None
        self.history: dict[str, Any] = {}
        self.number = 0
        self.wakeup = asyncio.Event()
        self.interrupt_flag = False
        self.cache: dict[str, tuple[str, Any, Any]] = {}  # node id -> (signature, outputs, ui)
        self.stats: Counter[str] = Counter()
        self.blocked: dict[str, tuple[asyncio.Event, int | None]] = {}
        if os.environ.get("FAKE_COMFYUI_REFUSE_WS"):
            self.blocked["GET /ws"] = (asyncio.Event(), 503)
        self.release_flag = False

    # -- models and files ----------------------------------------------------------------
    @staticmethod
    def _read_extra_paths(configs: list[str]) -> dict[str, list[Path]]:
        dirs: dict[str, list[Path]] = {}
        for config in configs:
            import yaml  # ComfyUI reads this file with PyYAML too

            data = yaml.safe_load(Path(config).read_text()) or {}
            for entry in data.values():
                if not isinstance(entry, dict):
                    continue
                base = Path(os.path.expandvars(os.path.expanduser(entry.get("base_path", ""))))
                for key, value in entry.items():
                    if key in ("base_path", "is_default"):
                        continue
                    folder = FOLDER_ALIASES.get(key, key)
                    for line in str(value).splitlines():
                        if line.strip():
                            dirs.setdefault(folder, []).append(base / line.strip())
        return dirs

    def model_files(self, folder: str) -> list[str]:
        names: set[str] = set()
        for root in [MODELS / folder, *self.extra_model_dirs.get(folder, [])]:
            if root.is_dir():
                for path in root.rglob("*"):
                    if path.is_file():
                        names.add(path.relative_to(root).as_posix())
        return sorted(names)

    def _load_models(self, prompt: dict) -> None:
        """Read every model file the prompt's loaders name, in full, once per process."""
        loaded = self.__dict__.setdefault("loaded_models", set())
        for node in prompt.values():
            for name, value in (node.get("inputs") or {}).items():
                folder = MODEL_INPUTS.get((node.get("class_type"), name))
                if folder is None or not isinstance(value, str):
                    continue
                for root in [MODELS / folder, *self.extra_model_dirs.get(folder, [])]:
                    path = root / value
                    if path.is_file():
                        if path not in loaded:
                            with path.open("rb") as f:
                                while f.read(16 << 20):
                                    pass
                            loaded.add(path)
                        break

    def input_files(self) -> list[str]:
        # os.walk, as ComfyUI lists folders: it skips a folder removed while it walks (the
        # worker removes a finished job's input folder on a thread of its own), where rglob
        # raises and the request fails with a 500.
        found = []
        for root, _, files in os.walk(INPUT):
            found += [(Path(root) / name).relative_to(INPUT).as_posix() for name in files]
        return sorted(found)

    # -- messages -------------------------------------------------------------------------
    async def send(self, type_: str, data: dict[str, Any], client_id: str | None) -> None:
        message = json.dumps({"type": type_, "data": data})
        if client_id is None:
            targets = list(self.sockets.values())
        else:
            ws = self.sockets.get(client_id)
            targets = [ws] if ws is not None else []
        for ws in targets:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(message)

    async def send_status(self) -> None:
        remaining = len(self.queue) + (1 if self.running else 0)
        await self.send("status", {"status": {"exec_info": {"queue_remaining": remaining}}}, None)

    # -- validation -----------------------------------------------------------------------
    def _input_spec(self, class_type: str, name: str) -> tuple[str, Any, dict] | None:
        spec = self.info[class_type]["input"]
        for category in ("required", "optional"):
            if name in spec.get(category, {}):
                entry = spec[category][name]
                opts = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
                return category, entry[0], opts
        return None

    def _combo_options(self, class_type: str, name: str, type_: Any, opts: dict) -> list | None:
        if type_ == "COMBO":
            options = list(opts.get("options", []))
        elif isinstance(type_, list):
            options = list(type_)
        else:
            return None
        if class_type == "LoadImage" and name == "image":
            return self.input_files()
        folder = MODEL_INPUTS.get((class_type, name))
        if folder is not None:
            extra = ["pixel_space"] if class_type == "VAELoader" else []
            return self.model_files(folder) + extra
        return options

    def validate(self, prompt: Any) -> list[str]:
        if not isinstance(prompt, dict):
            raise TypeError("prompt must be an object")
        for node_id, node in prompt.items():
            if not isinstance(node, dict) or "class_type" not in node:
                raise ValidationFailed(
                    _err(
                        "invalid_prompt",
                        "Cannot execute because a node is missing the class_type property.",
                        f"Node ID '#{node_id}'",
                    ),
                    {},
                )
            if node["class_type"] not in self.info:
                raise ValidationFailed(
                    _err(
                        "invalid_prompt",
                        f"Cannot execute because node {node['class_type']} does not exist.",
                        f"Node ID '#{node_id}'",
                    ),
                    {},
                )
        outputs = [
            nid for nid, node in prompt.items() if self.info[node["class_type"]].get("output_node")
        ]
        if not outputs:
            raise ValidationFailed(_err("prompt_no_outputs", "Prompt has no outputs"), {})
        node_errors: dict[str, Any] = {}
        checked: dict[str, list] = {}
        for out in outputs:
            for nid in self._ancestors(prompt, out):
                if nid not in checked:
                    checked[nid] = self._validate_node(prompt, nid)
                if checked[nid]:
                    entry = node_errors.setdefault(
                        nid,
                        {
                            "errors": checked[nid],
                            "dependent_outputs": [],
                            "class_type": prompt[nid]["class_type"],
                        },
                    )
                    if out not in entry["dependent_outputs"]:
                        entry["dependent_outputs"].append(out)
        if node_errors:
            first = next(iter(node_errors.values()))["errors"][0]
            details = ""
            if first["type"] == "required_input_missing":
                details = f"Required input is missing: {first['details']}"
            raise ValidationFailed(
                _err(
                    "prompt_outputs_failed_validation", "Prompt outputs failed validation", details
                ),
                node_errors,
            )
        return outputs

    def _ancestors(self, prompt: dict, start: str) -> list[str]:
        seen: list[str] = []
        stack = [start]
        while stack:
            nid = stack.pop()
            if nid in seen or nid not in prompt:
                continue
            seen.append(nid)
            for value in prompt[nid].get("inputs", {}).values():
                if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
                    stack.append(str(value[0]))
        return seen

    def _validate_node(self, prompt: dict, nid: str) -> list[dict[str, Any]]:
        node = prompt[nid]
        class_type = node["class_type"]
        inputs = node.get("inputs", {}) or {}
        spec = self.info[class_type]["input"]
        errors = []
        for name in spec.get("required", {}):
            if name not in inputs:
                errors.append(
                    _err(
                        "required_input_missing", "Required input is missing", name, input_name=name
                    )
                )
        for name, value in inputs.items():
            found = self._input_spec(class_type, name)
            if found is None:
                continue
            _, type_, opts = found
            if isinstance(value, list):
                errors.extend(self._validate_link(prompt, nid, name, value, type_, opts))
                continue
            errors.extend(self._validate_value(class_type, name, value, type_, opts))
        return errors

    def _validate_link(
        self, prompt: dict, nid: str, name: str, value: list, type_: Any, opts: dict
    ) -> list[dict[str, Any]]:
        if len(value) != 2:
            return [
                _err(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    name,
                    input_name=name,
                    input_config=[type_, opts],
                    received_value=value,
                )
            ]
        src, slot = str(value[0]), value[1]
        try:
            outputs = self.info[prompt[src]["class_type"]]["output"]
            received = outputs[slot]
        except (KeyError, IndexError) as exc:
            detail = f"'{src}'" if isinstance(exc, KeyError) else "tuple index out of range"
            return [
                _err(
                    "exception_during_inner_validation",
                    "Exception when validating inner node",
                    detail,
                    input_name=name,
                    input_config=[type_, opts],
                    exception_message=detail,
                    exception_type=type(exc).__name__,
                    traceback=traceback.format_exc().splitlines(),
                    linked_node=[nid, 0],
                )
            ]
        expected = type_ if isinstance(type_, str) else "COMBO"
        if (
            "*" not in (received, expected)
            and received != expected
            and expected not in str(received).split(",")
        ):
            return [
                _err(
                    "return_type_mismatch",
                    "Return type mismatch between linked nodes",
                    f"{name}, received_type({received}) mismatch input_type({expected})",
                    input_name=name,
                    input_config=[type_, opts],
                    received_type=received,
                    linked_node=value,
                )
            ]
        return []

    def _validate_value(
        self, class_type: str, name: str, value: Any, type_: Any, opts: dict
    ) -> list[dict[str, Any]]:
        config = [type_, opts]
        options = self._combo_options(class_type, name, type_, opts)
        if options is not None:
            if value not in options:
                shown = repr(options) if len(options) < 50 else f"list of length {len(options)}"
                detail = f"{name}: {value!r} not in {shown}"
                if class_type == "LoadImage":
                    return [
                        _err(
                            "custom_validation_failed",
                            "Custom validation failed for node",
                            f"{name} - Invalid image file: {value}",
                            input_name=name,
                        )
                    ]
                return [
                    _err(
                        "value_not_in_list",
                        "Value not in list",
                        detail,
                        input_name=name,
                        input_config=config,
                        received_value=value,
                    )
                ]
            return []
        if type_ in ("INT", "FLOAT"):
            try:
                number = int(value) if type_ == "INT" else float(value)
            except (TypeError, ValueError) as exc:
                return [
                    _err(
                        "invalid_input_type",
                        f"Failed to convert an input value to a {type_} value",
                        f"{name}, {value}, {exc}",
                        input_name=name,
                        input_config=config,
                        received_value=value,
                        exception_message=str(exc),
                    )
                ]
            if "min" in opts and number < opts["min"]:
                return [
                    _err(
                        "value_smaller_than_min",
                        f"Value {number} smaller than min of {opts['min']}",
                        name,
                        input_name=name,
                        input_config=config,
                        received_value=value,
                    )
                ]
            if "max" in opts and number > opts["max"]:
                return [
                    _err(
                        "value_bigger_than_max",
                        f"Value {number} bigger than max of {opts['max']}",
                        name,
                        input_name=name,
                        input_config=config,
                        received_value=value,
                    )
                ]
        return []

    # -- execution ------------------------------------------------------------------------
    def _signature(self, prompt: dict, nid: str, memo: dict[str, str]) -> str:
        if nid in memo:
            return memo[nid]
        node = prompt[nid]
        parts: list[Any] = [node["class_type"]]
        for key in sorted(node.get("inputs", {})):
            value = node["inputs"][key]
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                parts.append([key, self._signature(prompt, str(value[0]), memo), value[1]])
            else:
                parts.append([key, value])
        if node["class_type"] == "LoadImage":  # like IS_CHANGED: the file's content counts
            path = INPUT / str(node["inputs"].get("image", ""))
            parts.append(hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "")
        if node["class_type"] in FAKE_CLASSES:
            parts.append(uuid.uuid4().hex)  # never cached
        memo[nid] = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
        return memo[nid]

    def _order(self, prompt: dict, outputs: list[str]) -> list[str]:
        order: list[str] = []

        def visit(nid: str) -> None:
            if nid in order:
                return
            for value in prompt[nid].get("inputs", {}).values():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt:
                    visit(str(value[0]))
            order.append(nid)

        for out in outputs:
            visit(out)
        return order

    async def worker_loop(self) -> None:
        while True:
            while not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
            item = self.queue.popleft()
            self.running = item
            self.interrupt_flag = False
            self.release_flag = False
            await self.send_status()
            try:
                await self.execute(item)
            finally:
                self.running = None
            await self.send_status()
            _number, prompt_id, _, extra, _ = item
            client_id = extra.get("client_id")
            if client_id:
                await self.send("executing", {"node": None, "prompt_id": prompt_id}, client_id)

    async def execute(self, item: tuple[int, str, dict, dict, list[str]]) -> None:
        number, prompt_id, prompt, extra, outputs = item
        client_id = extra.get("client_id")
        messages: list[list[Any]] = []

        async def event(type_: str, data: dict[str, Any], record: bool = True) -> None:
            data = {**data, "prompt_id": prompt_id} if "prompt_id" not in data else data
            if record:
                messages.append([type_, {**data, "timestamp": int(time.time() * 1000)}])
            await self.send(
                type_,
                data,
                client_id if client_id else (None if type_ == "execution_interrupted" else NOBODY),
            )

        await event("execution_start", {"timestamp": int(time.time() * 1000)})
        if os.environ.get("FAKE_COMFYUI_READ_MODELS"):
            await asyncio.to_thread(self._load_models, prompt)
        memo: dict[str, str] = {}
        order = self._order(prompt, outputs)
        signatures = {nid: self._signature(prompt, nid, memo) for nid in order}
        # ComfyUI keeps only the outputs the current prompt can use (clean_unused): a node
        # whose inputs changed, or that the prompt lacks, loses its cached output
        self.cache = {
            nid: entry for nid, entry in self.cache.items() if signatures.get(nid) == entry[0]
        }
        cached = [
            nid for nid in order if nid in self.cache and self.cache[nid][0] == signatures[nid]
        ]
        await event("execution_cached", {"nodes": cached, "timestamp": int(time.time() * 1000)})
        values: dict[str, Any] = {nid: self.cache[nid][1] for nid in cached}
        ui_outputs: dict[str, Any] = {}
        states: dict[str, Any] = {}
        executed: list[str] = []

        async def progress_state() -> None:
            await self.send(
                "progress_state", {"prompt_id": prompt_id, "nodes": states}, client_id or None
            )

        status = "success"
        for nid in order:
            node = prompt[nid]
            if nid in cached:
                ui = self.cache[nid][2]
                if ui:
                    ui_outputs[nid] = ui
                    await event(
                        "executed", {"node": nid, "display_node": nid, "output": ui}, record=False
                    )
                continue
            if self.interrupt_flag:
                await event(
                    "execution_interrupted",
                    {
                        "node_id": nid,
                        "node_type": node["class_type"],
                        "executed": executed,
                        "timestamp": int(time.time() * 1000),
                    },
                )
                status = "error"
                break
            states[nid] = {
                "value": 0.0,
                "max": 1.0,
                "state": "running",
                "node_id": nid,
                "prompt_id": prompt_id,
                "display_node_id": nid,
                "parent_node_id": None,
                "real_node_id": nid,
            }
            await progress_state()
            await self.send(
                "executing",
                {"node": nid, "display_node": nid, "prompt_id": prompt_id},
                client_id or NOBODY,
            )
            inputs = {}
            for key, value in node.get("inputs", {}).items():
                if isinstance(value, list) and len(value) == 2 and str(value[0]) in values:
                    produced = values[str(value[0])]
                    inputs[key] = produced[value[1]] if value[1] < len(produced) else None
                else:
                    inputs[key] = value
            try:
                result, ui = await self.run_node(
                    prompt_id, nid, node["class_type"], inputs, client_id
                )
            except Interrupted:
                await event(
                    "execution_interrupted",
                    {
                        "node_id": nid,
                        "node_type": node["class_type"],
                        "executed": executed,
                        "timestamp": int(time.time() * 1000),
                    },
                )
                status = "error"
                break
            except Exception as exc:
                await event(
                    "execution_error",
                    {
                        "node_id": nid,
                        "node_type": node["class_type"],
                        "executed": executed,
                        "exception_message": f"{exc}\n",
                        "exception_type": _exc_name(exc),
                        "traceback": traceback.format_exception(exc),
                        "current_inputs": {
                            k: [v if isinstance(v, str | int | float) else str(v)]
                            for k, v in inputs.items()
                        },
                        # like ComfyUI: the ids of the prompt's nodes (its cache key set)
                        "current_outputs": list(prompt),
                        "timestamp": int(time.time() * 1000),
                    },
                )
                status = "error"
                break
            values[nid] = result
            self.cache[nid] = (signatures[nid], result, ui)
            executed.append(nid)
            states[nid] = {**states[nid], "value": 1.0, "state": "finished"}
            if ui:
                ui_outputs[nid] = ui
                await self.send(
                    "executed",
                    {"node": nid, "display_node": nid, "output": ui, "prompt_id": prompt_id},
                    client_id or NOBODY,
                )
            await progress_state()
        if status == "success":
            await event("execution_success", {"timestamp": int(time.time() * 1000)})
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, prompt, extra, outputs],
            "outputs": ui_outputs if status == "success" else {},
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages,
            },
            "meta": {
                nid: {"node_id": nid, "display_node": nid, "parent_node": None, "real_node_id": nid}
                for nid in ui_outputs
            },
        }

    async def _sleep_checking(self, seconds: float, honour_interrupt: bool = True) -> None:
        deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
        while time.monotonic() < deadline:
            if honour_interrupt and self.interrupt_flag:
                raise Interrupted()
            if seconds <= 0 and self.release_flag:
                return
            await asyncio.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    async def run_node(
        self, prompt_id: str, nid: str, class_type: str, inputs: dict, client_id: str | None
    ) -> tuple[list[Any], dict[str, Any] | None]:
        async def progress(value: int, maximum: int) -> None:
            await self.send(
                "progress",
                {"value": value, "max": maximum, "prompt_id": prompt_id, "node": nid},
                client_id or NOBODY,
            )

        if class_type == "FakeCrash":
            log("!!! FakeCrash: exiting in the middle of a prompt")
            os._exit(3)
        if class_type in ("FakeHang", "FakeIgnoreInterrupt"):
            await self._sleep_checking(
                float(inputs.get("seconds", 0)), honour_interrupt=class_type == "FakeHang"
            )
            return [inputs.get("images") or [Image.new("RGB", (8, 8), (90, 90, 90))]], None
        if class_type == "LoadImage":
            path = INPUT / str(inputs["image"])
            with Image.open(path) as img:  # raises like ComfyUI on a missing or corrupt file
                frame = img.convert("RGB")
            return [[frame], None], None
        if class_type == "ImageInvert":
            return [[ImageOps.invert(img) for img in inputs["image"]]], None
        if class_type == "ImageScale":
            size = (int(inputs["width"]), int(inputs["height"]))
            return [[img.resize(size) for img in inputs["image"]]], None
        if class_type == "SaveImage":
            return [], {
                "images": self._save_images(
                    inputs["images"],
                    str(inputs.get("filename_prefix", "ComfyUI")),
                    OUTPUT,
                    "output",
                )
            }
        if class_type == "PreviewImage":
            prefix = "ComfyUI_temp_" + "".join(random.choices(string.ascii_lowercase, k=5))
            return [], {"images": self._save_images(inputs["images"], prefix, TEMP, "temp")}
        if class_type == "VHS_VideoCombine":
            return await self._video_combine(inputs, progress)
        if class_type == "WanFirstLastFrameToVideo":
            size = (int(inputs["width"]), int(inputs["height"]))
            start = (inputs.get("start_image") or [Image.new("RGB", size)])[0].resize(size)
            end = (inputs.get("end_image") or [start])[-1].resize(size)
            length = int(inputs["length"])
            frames = [start] * ((length + 1) // 2) + [end] * (length // 2)
            return [inputs["positive"], inputs["negative"], {"frames": frames}], None
        if class_type in ("KSampler", "KSamplerAdvanced"):
            steps = int(inputs.get("steps", 1))
            first = int(inputs.get("start_at_step", 0))
            last = min(int(inputs.get("end_at_step", steps)), steps)
            total = max(last - first, 1)
            delay = float(os.environ.get("FAKE_COMFYUI_STEP_DELAY", "0"))
            for step in range(1, total + 1):
                await asyncio.sleep(delay)
                if self.interrupt_flag:
                    raise Interrupted()
                await progress(step, total)
            return [inputs.get("latent_image")], None
        if class_type == "VAEDecode":
            latent = inputs.get("samples") or {}
            frames = latent.get("frames") if isinstance(latent, dict) else None
            return [frames or [Image.new("RGB", (64, 64), (128, 128, 128))]], None
        outputs = self.info[class_type].get("output", [])
        passthrough = [v for v in inputs.values() if not isinstance(v, str | int | float)]
        return [passthrough[0] if passthrough else f"<{t}>" for t in outputs], None

    @staticmethod
    def _next_counter(folder: Path, stem: str) -> int:
        best = 0
        if folder.is_dir():
            for path in folder.iterdir():
                name = path.name
                if name.startswith(stem + "_"):
                    digits = name[len(stem) + 1 :].split("_")[0].split(".")[0]
                    if digits.isdigit():
                        best = max(best, int(digits))
        return best + 1

    def _split_prefix(self, prefix: str, root: Path) -> tuple[Path, str, str]:
        subfolder, _, stem = prefix.rpartition("/")
        folder = (root / subfolder).resolve()
        if root.resolve() not in (folder, *folder.parents):
            raise ValueError("Saving image outside the output folder is not allowed.")
        folder.mkdir(parents=True, exist_ok=True)
        return folder, subfolder, stem

    def _save_images(
        self, images: list[Image.Image], prefix: str, root: Path, type_: str
    ) -> list[dict[str, str]]:
        folder, subfolder, stem = self._split_prefix(prefix, root)
        counter = self._next_counter(folder, stem)
        saved = []
        for img in images:
            name = f"{stem}_{counter:05}_.png"
            img.save(folder / name, compress_level=1)
            saved.append({"filename": name, "subfolder": subfolder, "type": type_})
            counter += 1
        return saved

    async def _video_combine(self, inputs: dict, progress: Any) -> tuple[list, dict]:
        frames: list[Image.Image] = inputs["images"]
        fmt = str(inputs.get("format", "image/gif"))
        save = bool(inputs.get("save_output", True))
        root, type_ = (OUTPUT, "output") if save else (TEMP, "temp")
        folder, subfolder, stem = self._split_prefix(
            str(inputs.get("filename_prefix", "AnimateDiff")), root
        )
        counter = self._next_counter(folder, stem)
        name = f"{stem}_{counter:05}.{VHS_EXT.get(fmt, 'mp4')}"
        frames[0].save(folder / f"{stem}_{counter:05}.png")
        rate = float(inputs.get("frame_rate", 8))
        for i in range(1, len(frames) + 1):
            await progress(i, len(frames))
        if fmt in ("image/gif", "image/webp", "video/ffmpeg-gif"):
            frames[0].save(
                folder / name,
                save_all=True,
                append_images=frames[1:],
                duration=int(1000 / rate),
                loop=int(inputs.get("loop_count", 0)),
            )
        else:
            # No encoder here: an ISO-BMFF `ftyp` box, then a `free` box whose JSON says what
            # a real encoder would have received (tests read it back).
            meta = json.dumps(
                {
                    "frames": len(frames),
                    "width": frames[0].width,
                    "height": frames[0].height,
                    "frame_rate": rate,
                }
            ).encode()
            with open(folder / name, "wb") as f:
                f.write(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
                f.write((8 + len(meta)).to_bytes(4, "big") + b"free" + meta)
        entry = {
            "filename": name,
            "subfolder": subfolder,
            "type": type_,
            "format": fmt,
            "frame_rate": rate,
            "workflow": f"{stem}_{counter:05}.png",
            "fullpath": str(folder / name),
        }
        return [[True, [str(folder / name)]]], {"gifs": [entry]}


def _exc_name(exc: BaseException) -> str:
    module = type(exc).__module__
    return type(exc).__name__ if module == "builtins" else f"{module}.{type(exc).__name__}"


def build_app(server: Server) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def origin_and_stats(request: web.Request, handler: Any) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin:
            host = origin.split("://", 1)[-1].split(":")[0].split("/")[0]
            if host not in ("127.0.0.1", "localhost", request.host.split(":")[0]):
                return web.Response(status=403)
        if not request.path.startswith("/fake/"):
            path = request.path[4:] if request.path.startswith("/api/") else request.path
            key = (
                path
                if not path.startswith(("/history/", "/object_info/", "/models/"))
                else path.rsplit("/", 1)[0] + "/{id}"
            )
            key = f"{request.method} {key}"
            server.stats[key] += 1
            if key in server.blocked:
                unblocked, status = server.blocked[key]
                if status is not None:
                    return web.Response(status=status)
                await unblocked.wait()
        return await handler(request)

    def route(method: str, path: str) -> Any:
        def decorate(fn: Any) -> Any:
            routes.route(method, path)(fn)
            routes.route(method, "/api" + path)(fn)
            return fn

        return decorate

    @route("GET", "/")
    async def index(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>ComfyUI</title>", content_type="text/html")

    @route("GET", "/ws")
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        server.sockets[sid] = ws  # a second socket with the same id takes over
        server.stats["websocket connections"] += 1
        remaining = len(server.queue) + (1 if server.running else 0)
        await ws.send_str(
            json.dumps(
                {
                    "type": "status",
                    "data": {"status": {"exec_info": {"queue_remaining": remaining}}, "sid": sid},
                }
            )
        )
        first = True
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and first:
                    with contextlib.suppress(ValueError):
                        if json.loads(msg.data).get("type") == "feature_flags":
                            await ws.send_str(
                                json.dumps({"type": "feature_flags", "data": features()})
                            )
                first = False
        finally:
            # As ComfyUI does: whichever socket of this id closes, the id is unregistered.
            server.sockets.pop(sid, None)
            server.stats["websocket disconnects"] += 1
        return ws

    def features() -> dict[str, Any]:
        return {
            "supports_preview_metadata": True,
            "max_upload_size": 104857600,
            "extension": {"manager": {"supports_v4": True}},
        }

    @route("GET", "/system_stats")
    async def system_stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "system": {
                    "os": "linux",
                    "ram_total": 25276510208,
                    "ram_free": 20000000000,
                    "comfyui_version": "0.9.2",
                    "required_frontend_version": "1.36.14",
                    "installed_templates_version": "0.8.11",
                    "required_templates_version": "0.8.11",
                    "python_version": sys.version,
                    "pytorch_version": "none (fake)",
                    "embedded_python": False,
                    "argv": ["main.py", *sys.argv[1:]],
                },
                "devices": [
                    {
                        "name": "cpu",
                        "type": "cpu",
                        "index": None,
                        "vram_total": 25276510208,
                        "vram_free": 20000000000,
                        "torch_vram_total": 25276510208,
                        "torch_vram_free": 20000000000,
                    }
                ],
            }
        )

    @route("GET", "/features")
    async def get_features(request: web.Request) -> web.Response:
        return web.json_response(features())

    def listed_info(cls: str) -> dict[str, Any]:
        """A class's /object_info, a loader's options the files of its folder (as the real
        server lists them: get_filename_list), not the recorded machine's."""
        info = server.info[cls]
        inputs = [(name, folder) for (c, name), folder in MODEL_INPUTS.items() if c == cls]
        if not inputs:
            return info
        info = json.loads(json.dumps(info))
        for name, folder in inputs:
            for category in ("required", "optional"):
                entry = (info["input"].get(category) or {}).get(name)
                if entry and isinstance(entry[0], list):
                    extra = ["pixel_space"] if cls == "VAELoader" else []
                    entry[0] = server.model_files(folder) + extra
        return info

    @route("GET", "/object_info")
    async def object_info(request: web.Request) -> web.Response:
        return web.json_response({cls: listed_info(cls) for cls in server.info})

    @route("GET", "/object_info/{cls}")
    async def object_info_one(request: web.Request) -> web.Response:
        cls = request.match_info["cls"]
        return web.json_response({cls: listed_info(cls)} if cls in server.info else {})

    @route("GET", "/models")
    async def models(request: web.Request) -> web.Response:
        return web.json_response(FOLDERS)

    @route("GET", "/models/{folder}")
    async def models_folder(request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in FOLDERS:
            return web.Response(status=404)
        return web.json_response(server.model_files(folder))

    @route("GET", "/embeddings")
    async def embeddings(request: web.Request) -> web.Response:
        return web.json_response([])

    @route("GET", "/queue")
    async def get_queue(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "queue_running": [list(server.running)] if server.running else [],
                "queue_pending": [list(i) for i in server.queue],
            }
        )

    @route("POST", "/queue")
    async def post_queue(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            server.queue.clear()
        for pid in body.get("delete", []):
            for item in list(server.queue):
                if item[1] == pid:
                    server.queue.remove(item)
        return web.Response(status=200)

    @route("GET", "/prompt")
    async def get_prompt(request: web.Request) -> web.Response:
        return web.json_response({"exec_info": {"queue_remaining": len(server.queue)}})

    @route("POST", "/prompt")
    async def post_prompt(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _server_trouble()
        if "prompt" not in body:
            return web.json_response(
                {
                    "error": _err("no_prompt", "No prompt provided", "No prompt provided"),
                    "node_errors": {},
                },
                status=400,
            )
        prompt = body["prompt"]
        try:
            outputs = server.validate(prompt)
        except ValidationFailed as failed:
            log(f"invalid prompt: {failed.error['message']}")
            return web.json_response(
                {"error": failed.error, "node_errors": failed.node_errors}, status=400
            )
        except (TypeError, AttributeError):
            return _server_trouble()
        if any(
            isinstance(node, dict)
            and node.get("class_type") == "FakeCrash"
            and (node.get("inputs") or {}).get("at_queue") is True
            for node in prompt.values()
        ):
            log("!!! FakeCrash: exiting while answering POST /prompt")
            # As a killed process does: the connection drops first, the exit follows a moment
            # later (the worker must not take the drop for a live ComfyUI that did not answer).
            if request.transport is not None:
                request.transport.abort()
            time.sleep(0.5)
            os._exit(3)
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        extra = dict(body.get("extra_data") or {})
        if body.get("client_id"):
            extra["client_id"] = body["client_id"]
        extra["create_time"] = int(time.time() * 1000)
        server.number += 1
        number = server.number
        item = (number, prompt_id, prompt, extra, outputs)
        if body.get("front"):
            server.queue.appendleft(item)
        else:
            server.queue.append(item)
        server.wakeup.set()
        await server.send_status()
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    def _server_trouble() -> web.Response:
        return web.Response(
            status=500,
            text="500 Internal Server Error\n\nServer got itself in trouble",
            content_type="text/plain",
        )

    @route("POST", "/interrupt")
    async def interrupt(request: web.Request) -> web.Response:
        body = {}
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json()
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        if wanted is None or (server.running and server.running[1] == wanted):
            server.interrupt_flag = True
        else:
            log(f"Prompt {wanted} is not currently running, skipping interrupt")
        return web.Response(status=200)

    @route("POST", "/free")
    async def free(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("free_memory"):
            server.cache.clear()
        return web.Response(status=200)

    @route("GET", "/history")
    async def history_all(request: web.Request) -> web.Response:
        items = list(server.history.items())
        offset = int(request.query.get("offset", 0))
        if "max_items" in request.query:
            items = items[offset : offset + int(request.query["max_items"])]
        return web.json_response(dict(items))

    @route("GET", "/history/{id}")
    async def history_one(request: web.Request) -> web.Response:
        pid = request.match_info["id"]
        return web.json_response({pid: server.history[pid]} if pid in server.history else {})

    @route("POST", "/history")
    async def post_history(request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("clear"):
            server.history.clear()
        for pid in body.get("delete", []):
            server.history.pop(pid, None)
        return web.Response(status=200)

    @route("POST", "/upload/image")
    async def upload_image(request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        if image is None or not hasattr(image, "file"):
            return web.Response(status=400)
        type_ = str(post.get("type", "input"))
        root = {"input": INPUT, "temp": TEMP, "output": OUTPUT}.get(type_, INPUT)
        subfolder = str(post.get("subfolder", ""))
        overwrite = str(post.get("overwrite", "")).lower() in ("true", "1")
        folder = (root / subfolder).resolve()
        if root.resolve() not in (folder, *folder.parents):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        data = image.file.read()
        name = os.path.basename(image.filename)
        path = folder / name
        if path.exists() and not overwrite and path.read_bytes() != data:
            stem, ext = os.path.splitext(name)
            i = 1
            while (folder / f"{stem} ({i}){ext}").exists():
                i += 1
            name = f"{stem} ({i}){ext}"
            path = folder / name
        path.write_bytes(data)
        return web.json_response({"name": name, "subfolder": subfolder, "type": type_})

    @route("GET", "/view")
    async def view(request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename")
        if not filename:
            return web.Response(status=404)
        if filename.endswith("]") and " [" in filename:
            filename, _, annotated = filename[:-1].rpartition(" [")
            type_ = annotated
        else:
            type_ = request.query.get("type", "output")
        if filename.startswith("/") or ".." in filename:
            return web.Response(status=400)
        root = {"input": INPUT, "temp": TEMP, "output": OUTPUT}.get(type_)
        if root is None:
            return web.Response(status=400)
        folder = (root / request.query.get("subfolder", "")).resolve()
        if root.resolve() not in (folder, *folder.parents):
            return web.Response(status=403)
        path = folder / filename
        if not path.is_file():
            return web.Response(status=404)
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return web.Response(
            body=path.read_bytes(),
            content_type=ctype,
            headers={"Content-Disposition": f'filename="{filename}"'},
        )

    @routes.get("/fake/stats")
    async def fake_stats(request: web.Request) -> web.Response:
        return web.json_response(dict(server.stats))

    @routes.get("/fake/sockets")
    async def fake_sockets(request: web.Request) -> web.Response:
        return web.json_response(sorted(server.sockets))

    @routes.post("/fake/block")
    async def fake_block(request: web.Request) -> web.Response:
        body = await request.json()
        server.blocked[body["route"]] = (asyncio.Event(), body.get("status"))
        return web.Response(status=200)

    @routes.post("/fake/unblock")
    async def fake_unblock(request: web.Request) -> web.Response:
        body = await request.json()
        unblocked, _ = server.blocked.pop(body["route"])
        unblocked.set()
        return web.Response(status=200)

    @routes.get("/fake/env")
    async def fake_env(request: web.Request) -> web.Response:
        return web.json_response(dict(os.environ))

    @routes.post("/fake/write")
    async def fake_write(request: web.Request) -> web.Response:
        # What a node that writes where a job tells it would do, with ComfyUI's own rights.
        body = await request.json()
        try:
            Path(body["path"]).write_text(body.get("text", ""))
        except OSError as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"})
        return web.json_response({"written": body["path"]})

    @routes.post("/fake/read")
    async def fake_read(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            return web.json_response({"text": Path(body["path"]).read_text(errors="replace")})
        except OSError as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"})

    @routes.post("/fake/connect")
    async def fake_connect(request: web.Request) -> web.Response:
        # What a node (or ffmpeg) told to reach a service would do, with ComfyUI's own rights.
        port = int((await request.json())["port"])
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        except (TimeoutError, OSError) as exc:
            return web.json_response({"error": f"{type(exc).__name__}: {exc}"})
        writer.close()
        return web.json_response({"connected": port})

    @routes.post("/fake/release")
    async def fake_release(request: web.Request) -> web.Response:
        server.release_flag = True
        return web.Response(status=200)

    app = web.Application(middlewares=[origin_and_stats], client_max_size=100 * 1024 * 1024)
    app.add_routes(routes)

    async def start_worker(app: web.Application) -> None:
        app["worker"] = asyncio.create_task(server.worker_loop())

    app.on_startup.append(start_worker)
    return app


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", nargs="?", const="0.0.0.0,::", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--use-sage-attention", action="store_true")
    parser.add_argument("--fast", nargs="*")
    parser.add_argument("--preview-method", default="none")
    parser.add_argument("--extra-model-paths-config", action="append", nargs="+", default=[])
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--quick-test-for-ci", action="store_true")
    args, unknown = parser.parse_known_args(argv)
    args.extra_model_paths_config = [p for group in args.extra_model_paths_config for p in group]
    if unknown:
        log(f"(fake) ignoring arguments: {unknown}")
    return args


def quick_test() -> int:
    """`--quick-test-for-ci`, as ComfyUI does it: import every custom node (a folder with an
    __init__.py, or a top-level .py file), log the import summary, exit without serving. As in
    ComfyUI, `nodes.NODE_CLASS_MAPPINGS` then holds every class (the recorded /object_info's,
    and each node's own), each with the RELATIVE_PYTHON_MODULE ComfyUI gives it."""
    import importlib.util
    import types

    registry = types.ModuleType("nodes")
    registry.NODE_CLASS_MAPPINGS = {}
    recorded = load_object_info() if (HERE / "object_info.json.gz").is_file() else {}
    for name, info in recorded.items():
        registry.NODE_CLASS_MAPPINGS[name] = type(
            "Fake", (), {"RELATIVE_PYTHON_MODULE": info.get("python_module", "nodes")}
        )
    sys.modules["nodes"] = registry
    times = []
    nodes = HERE / "custom_nodes"
    for path in sorted(nodes.iterdir()) if nodes.is_dir() else []:
        init = path / "__init__.py" if path.is_dir() else path
        if path.name.startswith((".", "__")) or init.suffix != ".py" or not init.is_file():
            continue
        start = time.perf_counter()
        try:
            spec = importlib.util.spec_from_file_location(f"custom_nodes.{path.stem}", init)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for name, cls in getattr(module, "NODE_CLASS_MAPPINGS", {}).items():
                cls.RELATIVE_PYTHON_MODULE = f"custom_nodes.{path.stem}"
                registry.NODE_CLASS_MAPPINGS[name] = cls
            ok = True
        except Exception:
            log(traceback.format_exc())
            log(f"Cannot import {path} module for custom nodes")
            ok = False
        times.append((time.perf_counter() - start, str(path), ok))
    log("\nImport times for custom nodes:")
    for seconds, path, ok in sorted(times):
        log("{:6.1f} seconds{}: {}".format(seconds, "" if ok else " (IMPORT FAILED)", path))
    log("")
    return 0


def main() -> None:
    args = parse_args(sys.argv[1:])
    log(f"Python version: {sys.version.split()[0]}")
    log("ComfyUI version: 0.9.2 (fake)")
    if os.environ.get("FAKE_COMFYUI_START_DELAY"):
        time.sleep(float(os.environ["FAKE_COMFYUI_START_DELAY"]))
    if os.environ.get("FAKE_COMFYUI_START_BUSY"):
        busy_until = time.monotonic() + float(os.environ["FAKE_COMFYUI_START_BUSY"])
        while time.monotonic() < busy_until:
            sum(range(10000))
    fail_if = os.environ.get("FAKE_COMFYUI_FAIL_IF_EXISTS")
    if fail_if and os.path.exists(fail_if):
        log(f"RuntimeError: fake start failure: {fail_if} exists")
        sys.exit(1)
    if os.environ.get("FAKE_COMFYUI_EXIT_AT_START"):
        log("Traceback (most recent call last):")
        log("RuntimeError: fake start failure requested by FAKE_COMFYUI_EXIT_AT_START")
        sys.exit(int(os.environ["FAKE_COMFYUI_EXIT_AT_START"]))
    if args.use_sage_attention:
        try:
            import sageattention  # noqa: F401
        except ImportError:
            log(
                "To use the `--use-sage-attention` feature, the `sageattention` package must "
                "be installed first."
            )
            sys.exit(255)
        log("Using sage attention")
    if args.quick_test_for_ci:
        sys.exit(quick_test())
    for folder in (INPUT, OUTPUT, TEMP):
        folder.mkdir(exist_ok=True)
    for path in TEMP.iterdir():  # temp/ is wiped at start, as ComfyUI does
        if path.is_file():
            path.unlink()
    server = Server(args)
    host = args.listen.split(",")[0]
    log("Starting server\n")
    log(f"To see the GUI go to: http://{host}:{args.port}")
    web.run_app(
        build_app(server),
        host=host,
        port=args.port,
        print=None,
        handle_signals=True,
        shutdown_timeout=1,
    )


if __name__ == "__main__":
    main()
