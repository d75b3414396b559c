"""No program that a checkout's own `.git` names ever runs, in `nodes install`'s repair or in
`nodes verify`. Each attack is planted as an attacker with write access to the tree would plant
it: lines appended to the real `.git/config`, a real `.git/info/attributes`, a real hook, a
`.git` link to a git folder of the attacker's. The planted program writes a marker file. Each
test first proves, on a copy of the tree, that plain git does run it (so the plant is real),
then that install repairs the tree without running it and replaces what was planted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bake.locks.nodes import load_nodes_lock
from bake.nodes import git
from bake.nodes.install import install_nodes
from bake.nodes.resolve import update_nodes

KJ, EASY = "ComfyUI-KJNodes", "ComfyUI-Easy-Use"
FRONT = "ComfyUI-Easy-Use-Frontend"
ROOT = Path(__file__).resolve().parents[2]


class Attack:
    """The marker file and the program that writes it (a shell script that passes its input
    through, so it also works as a filter)."""

    def __init__(self, tmp_path: Path):
        self.marker = tmp_path / "pwned"
        self.program = tmp_path / "evil.sh"
        self.program.write_text(f'#!/bin/sh\necho "$0 $*" >> {self.marker}\ncat\n')
        self.program.chmod(0o755)
        # the same without passing input through, for where git waits on its output
        self.command = tmp_path / "evil-command.sh"
        self.command.write_text(f'#!/bin/sh\necho "$0 $*" >> {self.marker}\n')
        self.command.chmod(0o755)

    def ran(self) -> bool:
        return self.marker.exists()

    def reset(self) -> None:
        self.marker.unlink(missing_ok=True)


@pytest.fixture
def installed(remotes, tmp_path):
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    assert update_nodes(lock, out=lambda _: None) == 0
    comfy = tmp_path / "ComfyUI"
    install(lock, comfy)
    return lock, comfy


def install(lock: Path, comfy: Path) -> list[str]:
    lines: list[str] = []
    install_nodes(load_nodes_lock(lock), comfy, log=lines.append)
    return lines


def verify(lock: Path, comfy: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bake", "nodes", "verify", "--comfyui-dir", str(comfy)]
    cmd += ["--lock", str(lock), "--models-lock", str(lock.parent / "none.yaml")]
    (lock.parent / "none.yaml").write_text("version: 1\nmodels: {}\n")
    return subprocess.run(
        cmd, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=False
    )


def plain_git(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    """git as anyone would run it in that folder: no overrides of ours."""
    subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL, check=False
    )


def control(node: Path, tmp_path: Path, trigger, attack: Attack) -> None:
    """The plant is real: on a copy of the tree, plain git runs the attacker's program."""
    copy = tmp_path / "control" / node.name
    shutil.copytree(node, copy, symlinks=True)
    trigger(copy)
    assert attack.ran(), "the planted program should run under plain git"
    attack.reset()
    shutil.rmtree(tmp_path / "control")


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def config_keys(path: Path) -> set[str]:
    return {key for key, _ in git.read_config_file(path) or []}


# Each plant: what goes into the node's .git, the key verify names, and how plain git fires it.
PLANTS = {
    "smudge filter switched on from info/attributes": (
        '[filter "pwn"]\n\tsmudge = {evil}\n\tclean = {evil}\n',
        "*.py filter=pwn\n",
        "filter.pwn.clean, filter.pwn.smudge",
        ["checkout", "--", "__init__.py"],
    ),
    "textconv switched on from info/attributes": (
        '[diff "pwn"]\n\ttextconv = {evil}\n',
        "*.py diff=pwn\n",
        "diff.pwn.textconv",
        ["diff", "HEAD"],
    ),
    "diff.external": (
        "[diff]\n\texternal = {evil}\n",
        None,
        "diff.external",
        ["diff", "HEAD"],
    ),
    "core.fsmonitor": (
        "[core]\n\tfsmonitor = {evil}\n",
        None,
        "core.fsmonitor",
        ["status"],
    ),
    "include.path to a file that sets core.fsmonitor": (
        "[include]\n\tpath = {included}\n",
        None,
        "include.path",
        ["status"],
    ),
}


@pytest.mark.parametrize("form", list(PLANTS))
def test_a_program_planted_in_git_config_never_runs_when_install_repairs(
    installed, remotes, tmp_path, form
):
    lock, comfy = installed
    attack = Attack(tmp_path)
    node = comfy / "custom_nodes" / KJ
    config, attributes, keys, trigger = PLANTS[form]
    included = tmp_path / "evil.gitconfig"
    included.write_text(f"[core]\n\tfsmonitor = {attack.program}\n")
    append(node / ".git/config", config.format(evil=attack.program, included=included))
    if attributes:
        (node / ".git/info/attributes").write_text(attributes)
    # the edit a repair undoes: checkout, diff and index refresh all run
    (node / "__init__.py").write_text("import os; os.system('id')\n")

    env = remotes.world.env()
    control(node, tmp_path, lambda copy: plain_git(trigger, copy, env), attack)

    done = verify(lock, comfy, env)
    assert done.returncode == 1
    assert (
        f"error: custom_nodes/{KJ}/.git/config: unsafe: git metadata git did not write (it set "
        f"{keys}): git would act on it in this checkout; python -m bake nodes install replaces it"
    ) in done.stderr.splitlines()
    if attributes:
        assert f"error: custom_nodes/{KJ}/.git/info/attributes: unsafe: " in done.stderr
    assert not attack.ran()

    lines = install(lock, comfy)
    assert not attack.ran()
    replaced = [line for line in lines if "replaced git metadata" in line]
    assert replaced == [
        f"custom_nodes.{KJ}: replaced git metadata that git did not write, so that nothing it "
        f"names runs: .git/config (it set {keys})"
        + (
            ", .git/info/attributes (attributes that switch filter and diff programs on)"
            if attributes
            else ""
        )
    ]
    assert any(line.startswith(f"custom_nodes.{KJ}: repaired: local edits") for line in lines)
    assert (node / "__init__.py").read_text() == "NODE_CLASS_MAPPINGS = {}\n"
    assert config_keys(node / ".git/config") == {
        "core.repositoryformatversion",
        "core.filemode",
        "core.bare",
        "core.logallrefupdates",
        "remote.origin.url",
        "remote.origin.fetch",
    }
    assert not (node / ".git/info/attributes").exists()
    assert verify(lock, comfy, env).returncode == 0
    assert not attack.ran()


def test_a_post_checkout_hook_never_runs_and_is_removed(installed, remotes, tmp_path):
    lock, comfy = installed
    attack = Attack(tmp_path)
    node = comfy / "custom_nodes" / KJ
    hook = node / ".git/hooks/post-checkout"
    shutil.copy(attack.program, hook)
    (node / "__init__.py").write_text("edited\n")
    env = remotes.world.env()
    control(
        node, tmp_path, lambda copy: plain_git(["checkout", "--detach", "HEAD"], copy, env), attack
    )

    assert (
        f"error: custom_nodes/{KJ}/.git/hooks/post-checkout: unsafe: git metadata git did not "
        "write (a hook, a program git runs)"
    ) in verify(lock, comfy, env).stderr
    lines = install(lock, comfy)
    assert not attack.ran()
    assert (
        f"custom_nodes.{KJ}: replaced git metadata that git did not write, so that nothing it "
        "names runs: .git/hooks/post-checkout (a hook, a program git runs)"
    ) in lines
    assert not hook.exists() and (node / ".git/hooks/pre-commit.sample").exists()
    assert (node / "__init__.py").read_text() == "NODE_CLASS_MAPPINGS = {}\n"


def test_a_submodule_update_command_in_git_config_never_runs(installed, remotes, tmp_path):
    # git refuses `update = !cmd` from .gitmodules, but honours it from .git/config, and a
    # repair of a damaged submodule runs `git submodule update --force`
    lock, comfy = installed
    attack = Attack(tmp_path)
    node = comfy / "custom_nodes" / EASY
    append(node / ".git/config", f'[submodule "{FRONT}"]\n\tupdate = !{attack.program}\n')
    (node / FRONT / "app.js").unlink()
    env = remotes.world.env()
    control(
        node,
        tmp_path,
        lambda copy: plain_git(["submodule", "update", "--init", "--force"], copy, env),
        attack,
    )

    lines = install(lock, comfy)
    assert not attack.ran()
    assert (
        f"custom_nodes.{EASY}: replaced git metadata that git did not write, so that nothing it "
        f"names runs: .git/config (it set submodule.{FRONT}.update)"
    ) in lines
    assert (node / FRONT / "app.js").read_text() == "console.log(1)\n"
    assert f"submodule.{FRONT}.update" not in config_keys(node / ".git/config")


def test_a_submodules_git_folder_is_held_to_the_same_rules(installed, remotes, tmp_path):
    lock, comfy = installed
    attack = Attack(tmp_path)
    node = comfy / "custom_nodes" / EASY
    module = node / ".git/modules" / FRONT
    append(module / "config", f"[core]\n\tfsmonitor = {attack.program}\n")
    shutil.copy(attack.program, module / "hooks/post-checkout")
    (node / FRONT / "app.js").write_text("edited\n")
    env = remotes.world.env()

    done = verify(lock, comfy, env)
    assert f"error: custom_nodes/{EASY}/.git/modules/{FRONT}/config: unsafe: " in done.stderr
    assert f"error: custom_nodes/{EASY}/.git/modules/{FRONT}/hooks/post-checkout: unsafe: " in (
        done.stderr
    )
    install(lock, comfy)
    assert not attack.ran()
    assert "core.fsmonitor" not in config_keys(module / "config")
    assert "core.worktree" in config_keys(module / "config")  # git's own, inside the entry
    assert not (module / "hooks/post-checkout").exists()
    assert (node / FRONT / "app.js").read_text() == "console.log(1)\n"
    assert verify(lock, comfy, env).returncode == 0


def _evil_gitdir(node: Path, tmp_path: Path, attack: Attack) -> Path:
    """A git folder of the attacker's, outside the tree: a copy of the real one with a hook
    and an fsmonitor command."""
    elsewhere = tmp_path / "attacker" / "git"
    shutil.copytree(node, elsewhere, symlinks=True)
    append(elsewhere / "config", f"[core]\n\tfsmonitor = {attack.program}\n")
    shutil.copy(attack.program, elsewhere / "hooks/post-checkout")
    return elsewhere


def test_a_dot_git_link_to_another_git_folder_is_dropped(installed, remotes, tmp_path):
    lock, comfy = installed
    attack = Attack(tmp_path)
    node = comfy / "custom_nodes" / KJ
    elsewhere = _evil_gitdir(node / ".git", tmp_path, attack)
    shutil.rmtree(node / ".git")
    (node / ".git").write_text(f"gitdir: {elsewhere}\n")
    env = remotes.world.env()
    control(node, tmp_path, lambda copy: plain_git(["status"], copy, env), attack)

    lines = install(lock, comfy)
    assert not attack.ran()
    assert (
        f"custom_nodes.{KJ}: replaced git metadata that git did not write, so that nothing it "
        "names runs: .git (a link to another git folder, whose config git would read)"
    ) in lines
    assert (node / ".git").is_dir()
    assert verify(lock, comfy, env).returncode == 0


def test_a_submodule_link_to_a_git_folder_outside_is_never_followed(installed, remotes, tmp_path):
    lock, comfy = installed
    attack = Attack(tmp_path)
    node = comfy / "custom_nodes" / EASY
    sub = node / FRONT
    elsewhere = _evil_gitdir(node / ".git/modules" / FRONT, tmp_path, attack)
    (elsewhere / "config").write_text(
        (elsewhere / "config").read_text().replace("../../../", str(sub.parent) + "/")
    )
    (sub / ".git").write_text(f"gitdir: {elsewhere}\n")
    env = remotes.world.env()
    control(node, tmp_path, lambda copy: plain_git(["status"], copy / FRONT, env), attack)

    done = verify(lock, comfy, env)
    assert done.returncode == 1
    assert f"{FRONT}/.git points outside .git/modules/" in done.stderr
    assert not attack.ran()
    install(lock, comfy)
    assert not attack.ran()
    assert git.submodule_gitdir(sub, node / ".git")[0] == (node / ".git/modules" / FRONT).resolve()
    assert verify(lock, comfy, env).returncode == 0


def test_every_key_off_the_allow_list_is_dropped_and_git_never_writes_elsewhere(
    installed, remotes, tmp_path
):
    lock, comfy = installed
    node = comfy / "custom_nodes" / KJ
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    append(
        node / ".git/config",
        f"[core]\n\tsshCommand = evil\n\taskPass = evil\n\tworktree = {elsewhere}\n"
        "[credential]\n\thelper = !evil\n"
        '[remote "origin"]\n\tuploadpack = evil\n\treceivepack = evil\n'
        '[url "ext::sh -c evil"]\n\tinsteadOf = file://\n'
        '[protocol "ext"]\n\tallow = always\n',
    )
    (node / "__init__.py").write_text("edited\n")
    env = remotes.world.env()
    done = verify(lock, comfy, env)
    keys = (
        "core.askpass, core.sshcommand, core.worktree, credential.helper, protocol.ext.allow, "
        "remote.origin.receivepack, remote.origin.uploadpack, url.ext::sh -c evil.insteadof"
    )
    assert (
        f"error: custom_nodes/{KJ}/.git/config: unsafe: git metadata git did not write "
        f"(it set {keys})"
    ) in done.stderr
    install(lock, comfy)
    assert not any(elsewhere.iterdir())  # the checkout wrote into the entry, not there
    assert config_keys(node / ".git/config") == {
        "core.repositoryformatversion",
        "core.filemode",
        "core.bare",
        "core.logallrefupdates",
        "remote.origin.url",
        "remote.origin.fetch",
    }
    assert (node / "__init__.py").read_text() == "NODE_CLASS_MAPPINGS = {}\n"


def test_verify_never_reads_a_checkouts_config_not_even_to_fetch_a_missing_object(
    installed, remotes, tmp_path
):
    # A partial clone's promisor remote is fetched from whenever an object is missing, and an
    # `ext::` URL runs a command: plain `git cat-file` in the checkout would run it the moment
    # `nodes verify` asks for a commit the folder does not hold (here: the lock moved on).
    lock, comfy = installed
    attack = Attack(tmp_path)
    node = comfy / "custom_nodes" / KJ
    append(
        node / ".git/config",
        f'[extensions]\n\tpartialclone = evil\n[remote "evil"]\n\turl = ext::{attack.command}\n'
        '\tpromisor = true\n[protocol "ext"]\n\tallow = always\n',
    )
    subprocess.run(
        ["git", "config", "--file", str(node / ".git/config"), "core.repositoryformatversion", "1"],
        check=True,
    )
    moved = remotes.nodes[KJ].commit({"more.py": "X = 1\n"}, "kj 2")
    assert update_nodes(lock, [KJ], out=lambda _: None) == 0
    env = remotes.world.env()

    def ask(copy: Path) -> None:
        subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=copy,
            env=env,
            input=f"{moved}\n".encode(),
            capture_output=True,
            check=False,
        )

    control(node, tmp_path, ask, attack)
    done = verify(lock, comfy, env)
    assert done.returncode == 1
    assert f"object {moved} (commit) is missing from its .git" in done.stderr
    assert not attack.ran()
    install(lock, comfy)  # moves the node to the new commit, config replaced first
    assert not attack.ran()
    assert verify(lock, comfy, env).returncode == 0


def test_a_clean_checkout_is_left_alone(installed, remotes, tmp_path):
    lock, comfy = installed
    node = comfy / "custom_nodes" / EASY
    before = {
        p: p.stat().st_mtime_ns
        for p in [node / ".git/config", node / ".git/modules" / FRONT / "config"]
    }
    assert git.inspect_metadata(node) == []
    lines = install(lock, comfy)
    assert not [line for line in lines if "replaced git metadata" in line]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert os.access(node / ".git/hooks/pre-commit.sample", os.R_OK)


# git's own plain form: read without starting git
PLAIN_CONFIGS = [
    '[core]\n\trepositoryformatversion = 0\n\tbare = false\n[remote "origin"]\n'
    "\turl = https://example.invalid/a b.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
    '[Core]\n\tFileMode = true\n[submodule "Web.Front"]\n\tactive = true\n',
    "[include]\n\tpath = /elsewhere\n",  # listed, not followed, as git lists it
]
# what an attacker may write to make a reader see something git does not: git decides
OTHER_CONFIGS = [
    '[core]\n\tfsmonitor = "a;b" ; comment\n',
    "[core]\n\tbare = false # hidden\n\tfsmonitor = x\n",
    "[core]\n\tbare = false\\\n\tfsmonitor = x\n",
    "[core.x]\n\tfsmonitor = y\n",
    '[remote "a\\"b"]\n\turl = x\n',
    "[core]\n\tfsmonitor =  spaced  \n",
    "[core]\r\n\tfsmonitor = x\r\n",
    "[core]\n\n\tfsmonitor = x\n",
    "[core]\n\tfsmonitor\n",
    "\ufeff[core]\n\tfsmonitor = x\n",
    "[core] fsmonitor = x\n",
]


@pytest.mark.parametrize("text", PLAIN_CONFIGS + OTHER_CONFIGS)
def test_git_metadata_config_is_read_as_git_reads_it(tmp_path, text):
    path = tmp_path / "config"
    path.write_bytes(text.encode())
    done = subprocess.run(
        ["git", "config", "--file", str(path), "--no-includes", "--list", "-z"],
        cwd=tmp_path,
        capture_output=True,
        check=True,
        env={**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull},
    )
    expected = [
        tuple(item.decode().partition("\n")[::2]) for item in done.stdout.split(b"\0") if item
    ]
    assert git.read_config_file(path) == expected
    assert (git._plain_config(text.encode()) is not None) == (text in PLAIN_CONFIGS)


def test_hooks_from_the_users_git_template_never_run_and_never_stay(remotes, tmp_path):
    # init.templateDir (pre-commit's init-templatedir, for one) puts hooks into every new
    # repository, the build's own checkouts included: they must not run, nor fail verify
    attack = Attack(tmp_path)
    template = tmp_path / "template"
    (template / "hooks").mkdir(parents=True)
    shutil.copy(attack.program, template / "hooks" / "post-checkout")
    remotes.world.set_config("init.templateDir", str(template))
    lock = remotes.lock(tmp_path / "nodes.lock.yaml")
    assert update_nodes(lock, out=lambda _: None) == 0
    comfy = tmp_path / "ComfyUI"
    lines = install(lock, comfy)
    assert not [line for line in lines if "replaced git metadata" in line]
    for folder in (comfy, comfy / "custom_nodes" / KJ, comfy / "custom_nodes" / EASY):
        assert not (folder / ".git/hooks/post-checkout").exists()
    assert not (
        comfy / "custom_nodes" / EASY / ".git/modules" / FRONT / "hooks/post-checkout"
    ).exists()
    assert verify(lock, comfy, remotes.world.env()).returncode == 0
    assert not attack.ran()
