"""ComfyUI's Landlock containment, applied for real (worker/comfy/landlock.py, containment.py).

Each attack runs as a `python -c` snippet behind the launcher, as code a job got ComfyUI to run
would; the same snippet run without the launcher (the control) shows the action is otherwise
possible, so a denial is Landlock's. Without Landlock (a seccomp filter from
tests/support/no_landlock.py), the launcher refuses to run anything and CONTAINMENT decides.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from worker.comfy import containment, landlock
from worker.comfy.landlock import Applied, Ruleset

ROOT = Path(__file__).resolve().parents[2]
NO_LANDLOCK = ROOT / "tests" / "support" / "no_landlock.py"
ABI = landlock.abi_version()


def needs_abi(abi: int) -> pytest.MarkDecorator:
    why = landlock.unavailable_reason() or f"this kernel has ABI {ABI}"
    return pytest.mark.skipif(abi > ABI, reason=f"needs Landlock ABI {abi}: {why}")


needs_seccomp_helper = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="tests/support/no_landlock.py filters x86_64 only"
)

# Every snippet records what each attempt gave: "ok" or the errno's name.
PRELUDE = """\
import errno, json, os, socket, subprocess, sys
R = {}
def attempt(name, fn):
    try:
        fn()
        R[name] = "ok"
    except OSError as e:
        R[name] = errno.errorcode.get(e.errno, str(e.errno))
"""
EPILOGUE = "\nprint(json.dumps(R))\n"


def base_read() -> tuple[str, ...]:
    """What any contained Python needs to start: the system and this interpreter."""
    roots = containment.interpreter_roots(sys.executable)
    return (*containment.SYSTEM_READ, *map(str, roots))


def python_command(body: str, *args: object) -> list[str]:
    return [sys.executable, "-I", "-c", PRELUDE + body + EPILOGUE, *map(str, args)]


def run(command: list[str], ruleset: Ruleset | None, **kwargs) -> subprocess.CompletedProcess:
    """`command`, behind the launcher when a ruleset is given."""
    if ruleset is not None:
        command = containment.launcher_command(ruleset, command)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, **kwargs)


def attempts(body: str, ruleset: Ruleset | None, *args: object, **kwargs) -> dict[str, str]:
    done = run(python_command(body, *args), ruleset, **kwargs)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def make_tree(base: Path) -> dict[str, Path]:
    """code/ (read only), write/ (writable), outside/ (neither), as ComfyUI's code, its
    output folder, and anything else on the machine."""
    tree = {name: base / name for name in ("code", "write", "outside")}
    for path in tree.values():
        path.mkdir(parents=True)
    (tree["code"] / "existing.py").write_text("print('original')\n")
    (tree["outside"] / "secret.txt").write_text("not-a-real-secret\n")
    return tree


def tree_ruleset(tree: dict[str, Path], **changes) -> Ruleset:
    fields = {
        "read": (*base_read(), str(tree["code"])),
        "write": (str(tree["write"]),),
        "devices": containment.SYSTEM_DEVICES,
        **changes,
    }
    return Ruleset(**fields)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sleeper():
    """A process outside the sandbox, same uid, holding a fake secret in its environment."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        env={"FAKE_SECRET": "not-a-real-secret"},
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


# --- filesystem --------------------------------------------------------------------------

FS_ATTACK = """\
code, w, out = sys.argv[1:4]
def write(path, mode="w"):
    with open(path, mode) as f:
        f.write("x")
attempt("write_inside", lambda: write(f"{w}/new.txt"))
attempt("mkdir_inside", lambda: os.mkdir(f"{w}/sub"))
attempt("rename_within", lambda: os.rename(f"{w}/new.txt", f"{w}/sub/moved.txt"))
attempt("write_outside", lambda: write(f"{out}/new.txt"))
attempt("read_code", lambda: open(f"{code}/existing.py").read())
attempt("create_py_in_code", lambda: write(f"{code}/evil.py"))
attempt("modify_code", lambda: write(f"{code}/existing.py", "a"))
attempt("unlink_code", lambda: os.unlink(f"{code}/existing.py"))
attempt("rename_into_code", lambda: os.rename(f"{w}/sub/moved.txt", f"{code}/moved.py"))
attempt("read_outside", lambda: open(f"{out}/secret.txt").read())
attempt("list_outside", lambda: os.listdir(out))
"""


@needs_abi(1)
def test_writes_only_in_write_folders_and_code_stays_read_only(tmp_path):
    control = make_tree(tmp_path / "control")
    got = attempts(FS_ATTACK, None, control["code"], control["write"], control["outside"])
    assert set(got.values()) == {"ok"}, got

    tree = make_tree(tmp_path / "contained")
    got = attempts(FS_ATTACK, tree_ruleset(tree), tree["code"], tree["write"], tree["outside"])
    assert got == {
        "write_inside": "ok",
        "mkdir_inside": "ok",
        "rename_within": "ok",
        "write_outside": "EACCES",
        "read_code": "ok",
        "create_py_in_code": "EACCES",
        "modify_code": "EACCES",
        "unlink_code": "EACCES",
        # Landlock: EACCES (no MAKE_REG in code/) prevails over EXDEV (REFER)
        "rename_into_code": "EACCES",
        "read_outside": "EACCES",
        "list_outside": "EACCES",
    }
    assert (tree["write"] / "sub" / "moved.txt").exists()
    assert not (tree["outside"] / "new.txt").exists()
    assert sorted(p.name for p in tree["code"].iterdir()) == ["existing.py"]
    assert (tree["code"] / "existing.py").read_text() == "print('original')\n"


EXEC_ATTACK = """\
for name in sys.argv[1:]:
    attempt(name, lambda: subprocess.run([name], check=True))
"""


@needs_abi(1)
def test_exec_only_from_read_folders(tmp_path):
    tree = make_tree(tmp_path)
    true = shutil.which("true")
    assert true
    copies = [tree["outside"] / "true", tree["write"] / "true"]  # write/: no EXECUTE either
    for copy in copies:
        shutil.copy2(true, copy)
    names = [true, *map(str, copies)]

    assert set(attempts(EXEC_ATTACK, None, *names).values()) == {"ok"}
    got = attempts(EXEC_ATTACK, tree_ruleset(tree), *names)
    assert got == {true: "ok", str(copies[0]): "EACCES", str(copies[1]): "EACCES"}


CHILD_ATTACK = """\
out = sys.argv[1]
shell = subprocess.run(["sh", "-c", f"echo x > {out}/from_child && cat {out}/secret.txt"])
R["shell_exit"] = shell.returncode
"""


@needs_abi(1)
def test_children_of_the_contained_program_are_contained(tmp_path):
    control = make_tree(tmp_path / "control")
    assert attempts(CHILD_ATTACK, None, control["outside"]) == {"shell_exit": 0}
    assert (control["outside"] / "from_child").exists()

    tree = make_tree(tmp_path / "contained")
    got = attempts(CHILD_ATTACK, tree_ruleset(tree), tree["outside"])
    assert got["shell_exit"] != 0
    assert not (tree["outside"] / "from_child").exists()


FILE_RULES = """\
d = sys.argv[1]
attempt("read_file", lambda: open(f"{d}/model.bin").read())
attempt("read_sibling", lambda: open(f"{d}/other.bin").read())
attempt("rewrite_config", lambda: open(f"{d}/config.json", "w").write("{}"))
attempt("create_sibling", lambda: open(f"{d}/new.json", "w").write("{}"))
attempt("remove_config", lambda: os.unlink(f"{d}/config.json"))
"""


@needs_abi(3)  # rewriting with "w" truncates: LANDLOCK_ACCESS_FS_TRUNCATE
def test_single_file_rules_get_file_rights_only(tmp_path):
    """A file in `read` or `write` (a node's config file it rewrites at start): the kernel
    refuses directory rights on a file rule, so they are masked; its folder stays closed."""
    for name in ("model.bin", "other.bin", "config.json"):
        (tmp_path / name).write_text("x")
    ruleset = Ruleset(
        read=(*base_read(), str(tmp_path / "model.bin")),
        write=(str(tmp_path / "config.json"),),
    )
    assert attempts(FILE_RULES, ruleset, tmp_path) == {
        "read_file": "ok",
        "read_sibling": "EACCES",
        "rewrite_config": "ok",
        "create_sibling": "EACCES",
        "remove_config": "EACCES",
    }
    assert (tmp_path / "config.json").read_text() == "{}"


@needs_abi(1)
def test_dev_null_needs_a_device_rule(tmp_path):
    body = 'attempt("dev_null", lambda: open("/dev/null", "w").write("x"))'
    tree = make_tree(tmp_path)
    assert attempts(body, tree_ruleset(tree)) == {"dev_null": "ok"}
    assert attempts(body, tree_ruleset(tree, devices=())) == {"dev_null": "EACCES"}


# --- network ---------------------------------------------------------------------------

CONNECT = """\
def connect():
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5):
        pass
attempt("connect", connect)
"""


@needs_abi(4)
def test_no_outgoing_tcp(tmp_path):
    tree = make_tree(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        listener.settimeout(5)
        assert attempts(CONNECT, None, port) == {"connect": "ok"}
        listener.accept()[0].close()

        # connect_tcp=() denies every port, the one ComfyUI itself may bind included
        contained = tree_ruleset(tree, bind_tcp=(port,))
        assert attempts(CONNECT, contained, port) == {"connect": "EACCES"}
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


BIND = """\
def bind(port):
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
attempt("allowed", lambda: bind(int(sys.argv[1])))
attempt("other", lambda: bind(int(sys.argv[2])))
"""


@needs_abi(4)
def test_bind_only_the_allowed_port(tmp_path):
    tree = make_tree(tmp_path)
    allowed, other = free_port(), free_port()
    assert attempts(BIND, None, allowed, other) == {"allowed": "ok", "other": "ok"}
    contained = tree_ruleset(tree, bind_tcp=(allowed,))
    assert attempts(BIND, contained, allowed, other) == {"allowed": "ok", "other": "EACCES"}


# --- scope: abstract unix sockets and signals ------------------------------------------

ABSTRACT = """\
def connect(name):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(name)
attempt("outside_server", lambda: connect("\\0" + sys.argv[1]))
own = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
own.bind("\\0" + sys.argv[1] + "-own")
own.listen()
attempt("own_server", lambda: connect("\\0" + sys.argv[1] + "-own"))
"""


@needs_abi(6)
def test_abstract_unix_sockets_outside_are_out_of_reach(tmp_path):
    tree = make_tree(tmp_path)
    name = f"comfy-bake-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen()
        server.settimeout(5)
        assert attempts(ABSTRACT, None, name) == {"outside_server": "ok", "own_server": "ok"}
        server.accept()[0].close()

        got = attempts(ABSTRACT, tree_ruleset(tree), name)
        # its own abstract sockets (multiprocessing's) still work
        assert got == {"outside_server": "EPERM", "own_server": "ok"}
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()


SIGNALS = """\
pid = int(sys.argv[1])
attempt("probe", lambda: os.kill(pid, 0))
attempt("sigterm", lambda: os.kill(pid, 15))
child = subprocess.Popen(["sleep", "60"])
attempt("own_child", lambda: os.kill(child.pid, 15))
child.wait()
"""


@needs_abi(6)
def test_no_signals_to_processes_outside(tmp_path, sleeper):
    tree = make_tree(tmp_path)
    control = SIGNALS.replace('"sigterm", lambda: os.kill(pid, 15)', '"sigterm", lambda: None')
    assert set(attempts(control, None, sleeper.pid).values()) == {"ok"}

    got = attempts(SIGNALS, tree_ruleset(tree), sleeper.pid)
    assert got == {"probe": "EPERM", "sigterm": "EPERM", "own_child": "ok"}
    assert sleeper.poll() is None


ENVIRON = """\
def environ(pid):
    with open(f"/proc/{pid}/environ", "rb") as f:
        R[f"{pid}_secret"] = b"FAKE_SECRET=not-a-real-secret" in f.read()
for pid in sys.argv[1:]:
    attempt(pid, lambda: environ(pid))
with open("/proc/self/status") as f:
    caps = {k: int(v, 16) for k, v in (line.split(":") for line in f if line.startswith("Cap"))}
admin_or_perfmon = 1 << 21 | 1 << 38
R["caps"] = sorted(k for k, v in caps.items() if v & admin_or_perfmon)
"""


@needs_abi(1)
def test_environ_of_processes_outside_is_unreadable(tmp_path, sleeper):
    """Landlock denies ptrace-mode access to processes outside the domain, same uid or not:
    the worker's environment (its credentials) stays unreadable through /proc. The kernel lets
    CAP_SYS_ADMIN or CAP_PERFMON read it anyway, so the launcher drops both: run as root, this
    test shows it (its control, root with every capability, reads both environments)."""
    tree = make_tree(tmp_path)
    pids = [str(sleeper.pid), str(os.getpid()), "self"]
    control = attempts(ENVIRON, None, *pids)
    assert control[pids[0]] == "ok" and control[f"{pids[0]}_secret"] is True
    assert control[pids[1]] == "ok"

    done = run(python_command(ENVIRON, *pids), tree_ruleset(tree))
    assert done.returncode == 0, done.stderr
    assert "not-a-real-secret" not in done.stdout
    got = json.loads(done.stdout.splitlines()[-1])
    caps = got.pop("caps")
    assert got == {pids[0]: "EACCES", pids[1]: "EACCES", "self": "ok", "self_secret": False}
    # neither in CapEff, CapPrm, CapInh, CapAmb, nor (dropped where root may) CapBnd
    assert caps == [] if os.geteuid() == 0 else set(caps) <= {"CapBnd"}


# --- the launcher and ComfyUI's ruleset, for real ---------------------------------------

APPLY = """\
sys.path.insert(0, sys.argv[1])
from worker.comfy import landlock
ruleset = landlock.Ruleset.from_json(sys.argv[2])
applied = landlock.restrict_self(ruleset)
R.update(describe=applied.describe(), skipped=list(applied.skipped), abi=applied.abi)
attempt("list_root", lambda: os.listdir(sys.argv[1]))
"""


@needs_abi(1)
def test_restrict_self_skips_missing_paths_and_says_what_applied(tmp_path):
    missing = str(tmp_path / "not-there")
    ruleset = Ruleset(read=(*base_read(), missing), write=(missing + "-w",), scope=False)
    got = attempts(APPLY, None, ROOT, ruleset.to_json())
    absent = [p for p in (*ruleset.read, *ruleset.write) if not os.path.exists(p)]
    assert absent[-2:] == [missing, missing + "-w"]  # before them: /lib32 and the like
    assert got == {
        "describe": Applied.expected(ABI, scope=False).describe(),
        "skipped": absent,
        "abi": ABI,
        "list_root": "EACCES",
    }


COMFY_MAIN = """\
import json, os, socket, sys
import yaml  # from the interpreter's venv, found without running it
R = {}
def attempt(name, fn):
    try:
        fn()
        R[name] = "ok"
    except OSError as e:
        R[name] = e.errno
here = os.path.dirname(os.path.abspath(__file__))
def write(path):
    with open(path, "w") as f:
        f.write("x")
attempt("output", lambda: write(f"{here}/output/ComfyUI_00001_.png"))
attempt("node_config", lambda: write(f"{here}/custom_nodes/pack/config.json"))
attempt("node_code", lambda: write(f"{here}/custom_nodes/pack/__init__.py"))
attempt("tmpdir", lambda: write(f"{os.environ['TMPDIR']}/scratch"))
attempt("model", lambda: open(sys.argv[1]).read())
attempt("bind", lambda: socket.create_server(("127.0.0.1", int(sys.argv[2]))).close())
print(json.dumps(R))
"""


@needs_abi(4)
def test_comfy_ruleset_runs_comfyui_and_holds(tmp_path):
    comfyui = tmp_path / "comfyui"
    (comfyui / "custom_nodes" / "pack").mkdir(parents=True)
    for name in ("input", "output", "temp", "user"):
        (comfyui / name).mkdir()
    (comfyui / "main.py").write_text(COMFY_MAIN)
    (comfyui / "custom_nodes" / "pack" / "config.json").write_text("{}")
    models, tmpdir = tmp_path / "volume" / "models", tmp_path / "tmp"
    models.mkdir(parents=True)
    tmpdir.mkdir()
    (models / "m.safetensors").write_text("weights")
    port = free_port()
    ruleset = containment.comfy_ruleset(
        comfyui_dir=comfyui,
        python=sys.executable,
        read_extra=[models],
        write_extra=[tmpdir, comfyui / "custom_nodes" / "pack" / "config.json"],
        port=port,
    )
    command = [sys.executable, "-I", str(comfyui / "main.py"), models / "m.safetensors", port]
    done = run(list(map(str, command)), ruleset, env={**os.environ, "TMPDIR": str(tmpdir)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "output": "ok",
        "node_config": "ok",
        "node_code": 13,  # EACCES
        "tmpdir": "ok",
        "model": "ok",
        "bind": "ok",
    }


# --- without Landlock: a seccomp filter makes its system calls fail ----------------------

PROBE = """\
import json, sys
sys.path.insert(0, sys.argv[1])
from worker.comfy import containment, landlock
out = {"abi": landlock.abi_version(), "reason": landlock.unavailable_reason()}
auto = containment.decide("auto")
out.update(auto_applied=auto.applied, auto_line=containment.describe(auto, None))
try:
    containment.decide("required")
except containment.ContainmentUnavailable as e:
    out["required"] = str(e)
print(json.dumps(out))
"""


def no_landlock(command: list[str], *options: str) -> list[str]:
    return [sys.executable, str(NO_LANDLOCK), *options, "--", *command]


@needs_seccomp_helper
@needs_abi(1)
@pytest.mark.parametrize("errno_name", ["ENOSYS", "EPERM"])
def test_without_landlock_auto_runs_uncontained_and_required_refuses(errno_name):
    command = [sys.executable, "-I", "-c", PROBE, str(ROOT)]
    control = json.loads(subprocess.check_output(command, text=True, timeout=60))
    assert control["abi"] == ABI and control["auto_applied"] is True
    assert "required" not in control

    got = json.loads(
        subprocess.check_output(no_landlock(command, "--errno", errno_name), text=True, timeout=60)
    )
    assert got["abi"] == 0
    assert errno_name in got["reason"]
    assert got["auto_applied"] is False
    assert got["auto_line"].startswith("none (landlock unavailable: landlock_create_ruleset")
    assert got["auto_line"].endswith("), same user as the worker")
    assert errno_name in got["required"] and "CONTAINMENT=auto" in got["required"]
    assert "/sys/kernel/security/lsm" in got["required"]


@needs_seccomp_helper
@needs_abi(1)
def test_launcher_never_runs_the_program_uncontained(tmp_path):
    marker = tmp_path / "ran"
    ruleset = Ruleset(read=base_read(), write=(str(tmp_path),))
    command = containment.launcher_command(ruleset, ["sh", "-c", f"echo x > {marker}"])
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert marker.exists()
    marker.unlink()

    done = subprocess.run(no_landlock(command), capture_output=True, text=True, timeout=60)
    assert done.returncode == 126
    assert not marker.exists()
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("landlock: not applied, program not run:")
    assert "ENOSYS" in done.stderr


def test_launcher_refuses_a_bad_ruleset(tmp_path):
    marker = tmp_path / "ran"
    launcher = containment.launcher_command(Ruleset(), ["sh", "-c", f"echo x > {marker}"])
    launcher[launcher.index("--ruleset") + 1] = '{"read": "/"}'
    done = subprocess.run(launcher, capture_output=True, text=True, timeout=60)
    assert done.returncode == 126
    assert "bad --ruleset" in done.stderr
    assert not marker.exists()


# --- units ------------------------------------------------------------------------------


def test_handled_rights_follow_the_abi():
    abi1 = (1 << 13) - 1
    assert landlock.handled_for_abi(0) == (0, 0, 0)
    assert landlock.handled_for_abi(1) == (abi1, 0, 0)
    assert landlock.handled_for_abi(2) == (abi1 | landlock.FS_REFER, 0, 0)
    abi3 = abi1 | landlock.FS_REFER | landlock.FS_TRUNCATE
    assert landlock.handled_for_abi(3) == (abi3, 0, 0)
    assert landlock.handled_for_abi(4) == (abi3, 0b11, 0)
    assert landlock.handled_for_abi(5) == (abi3 | landlock.FS_IOCTL_DEV, 0b11, 0)
    assert landlock.handled_for_abi(6) == (abi3 | landlock.FS_IOCTL_DEV, 0b11, 0b11)
    assert landlock.handled_for_abi(7) == landlock.handled_for_abi(6)  # 7 added logging only
    assert [landlock._attr_size(abi) for abi in range(1, 8)] == [8, 8, 8, 16, 16, 24, 24]


def test_applied_describe():
    assert Applied.expected(7).describe() == "landlock abi 7 (fs, net, scope)"
    assert (
        Applied.expected(5).describe() == "landlock abi 5 (fs, net; no scope rules on this kernel)"
    )
    assert (
        Applied.expected(3).describe()
        == "landlock abi 3 (fs; no net or scope rules on this kernel)"
    )
    assert Applied.expected(6, scope=False).describe() == "landlock abi 6 (fs, net; scope off)"


def test_describe_lines():
    on = containment.Decision("auto", 7, Applied.expected(7))
    assert containment.describe(on, "comfy") == "landlock abi 7 (fs, net, scope), user comfy"
    off = containment.decide("off")
    assert not off.applied
    assert containment.describe(off, "comfy") == "none (CONTAINMENT=off), user comfy"
    missing = containment.Decision("auto", 0, None, "landlock unavailable: ENOSYS")
    assert (
        containment.describe(missing, None)
        == "none (landlock unavailable: ENOSYS), same user as the worker"
    )


@needs_abi(1)
def test_decide_here():
    assert containment.decide("auto") == containment.Decision("auto", ABI, Applied.expected(ABI))
    assert containment.decide("required").applied
    with pytest.raises(ValueError, match="CONTAINMENT=maybe"):
        containment.decide("maybe")


def test_ruleset_json_round_trip_and_refusals():
    ruleset = Ruleset(
        read=("/a",), write=("/b",), devices=("/dev/x",), bind_tcp=(8188,), scope=False
    )
    assert Ruleset.from_json(ruleset.to_json()) == ruleset
    for bad in (
        '{"read": "/"}',
        '{"bind_tcp": [70000]}',
        '{"bind_tcp": [true]}',
        '{"other": []}',
        "[]",
    ):
        with pytest.raises(ValueError):
            Ruleset.from_json(bad)


def fake_interpreters(tmp_path: Path) -> tuple[Path, Path]:
    """A base installation and a venv on it, as `uv venv` makes them."""
    base = tmp_path / "base"
    (base / "bin").mkdir(parents=True)
    (base / "bin" / "python3.11").write_text("")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(base / "bin" / "python3.11")
    (venv / "pyvenv.cfg").write_text(f"home = {base / 'bin'}\nversion_info = 3.11.7\n")
    return base, venv


def test_interpreter_roots_without_running_it(tmp_path):
    base, venv = fake_interpreters(tmp_path)
    assert containment.interpreter_roots(str(venv / "bin" / "python")) == [venv, base]
    assert containment.interpreter_roots(str(base / "bin" / "python3.11")) == [base]


def test_comfy_ruleset(tmp_path):
    base, venv = fake_interpreters(tmp_path)
    comfyui, models = tmp_path / "comfyui", tmp_path / "volume" / "models"
    config = comfyui / "custom_nodes" / "RES4LYF" / "res4lyf.config.json"
    ruleset = containment.comfy_ruleset(
        comfyui_dir=comfyui,
        python=str(venv / "bin" / "python"),
        read_extra=[models],
        write_extra=[tmp_path / "home" / ".cache", config],
        port=8188,
    )
    assert ruleset.read == (
        *containment.SYSTEM_READ,
        str(comfyui),
        str(venv),
        str(base),
        str(models),
    )
    assert ruleset.write == (
        *(str(comfyui / name) for name in ("input", "output", "temp", "user")),
        str(tmp_path / "home" / ".cache"),
        str(config),
        "/dev/shm",
        "/proc/self",
    )
    assert ruleset.devices[:5] == (
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
    )
    assert (ruleset.bind_tcp, ruleset.connect_tcp, ruleset.scope) == ((8188,), (), True)


def test_gpu_devices(tmp_path):
    dev = tmp_path / "dev"
    for name in (
        "nvidia0",
        "nvidiactl",
        "nvidia-uvm",
        "nvidia-caps/nvidia-cap1",
        "dri/renderD128",
        "null",
    ):
        (dev / name).parent.mkdir(parents=True, exist_ok=True)
        (dev / name).write_text("")
    found = containment.gpu_devices(dev)
    names = [str(Path(p).relative_to(dev)) for p in found]
    assert names == [
        "dri/renderD128",
        "nvidia-caps/nvidia-cap1",
        "nvidia-uvm",
        "nvidia0",
        "nvidiactl",
    ]


def test_launcher_command_shape():
    ruleset = Ruleset(read=("/usr",), bind_tcp=(8188,))
    command = containment.launcher_command(ruleset, ["python", "main.py"], python="/py")
    assert command[:2] == ["/py", "-I"]
    assert Path(command[2]).name == "landlock.py" and Path(command[2]).is_file()
    assert command[3] == "--ruleset" and Ruleset.from_json(command[4]) == ruleset
    assert command[5:] == ["--", "python", "main.py"]
