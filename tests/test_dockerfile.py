"""The CUDA image installs what CI installs, keeps the base image's torch, and
carries only the package sources (the DVC workspace is mounted)."""

from __future__ import annotations

import fnmatch
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        lines.append(current)
        current = ""
    out = []
    for line in lines:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def run_commands() -> list[list[str]]:
    """Every shell command of every RUN, split on && and tokenised."""
    commands = []
    for word, rest in instructions():
        if word == "RUN":
            for part in rest.split("&&"):
                commands.append(shlex.split(part.split(">")[0]))
    return commands


def pip_installs() -> list[list[str]]:
    return [c for c in run_commands() if "pip" in c and "install" in c and c[c.index("install") - 1] == "pip"]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_base_image_is_cuda_pytorch_satisfying_pyproject():
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) == 1
    m = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+)\.(\d+)-cudnn\d+-(runtime|devel)", froms[0])
    assert m, f"unexpected base image {froms[0]}"
    torch_req = next(Requirement(d) for d in pyproject()["project"]["dependencies"] if d.startswith("torch"))
    assert Version(m.group(1)) in torch_req.specifier
    assert int(m.group(2)) >= 12


def test_installs_the_project_with_the_dvc_and_brotli_extras_once():
    installs = [args for args in pip_installs() if any(a.startswith(".") for a in args)]
    assert len(installs) == 1, pip_installs()
    args = installs[0]
    targets = [a for a in args if a.startswith(".")]
    assert targets == [".[dvc,brotli]"], args  # brotli: the brotli compressors (docs/post-training.md)
    assert "-e" in args or "--editable" in args  # mounted sources are the ones that run


def test_image_dependencies_are_ci_dependencies_minus_test_tools():
    extras = pyproject()["project"]["optional-dependencies"]
    assert "dvc" in extras
    assert "dvc" in extras and "brotli" in extras
    assert "pgolf[dvc,brotli]" in extras["test"], "CI's test extra must contain the image's dvc and brotli extras"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -q -e '.[test]'" in ci


def test_torch_is_never_reinstalled_over_the_cuda_build():
    for args in pip_installs():
        named = [a for a in args[args.index("install") + 1:] if not a.startswith("-")]
        assert not any(re.match(r"torch\b", a) for a in named), args
        assert "--constraint" in args or "-c" in args, "torch must be held at the base image's version"
    script = " ".join(rest for word, rest in instructions() if word == "RUN")
    # The constraint file pins the torch that is already installed.
    assert re.search(r"print\(f'torch==\{torch\.__version__\}'\)\"? > (\S+)", script)
    constraint = re.search(r"> (\S+torch-constraint\.txt)", script).group(1)
    assert f"--constraint {constraint}" in script


def test_flash_attention_3_comes_from_pytorchs_index_for_the_base_images_cuda():
    """By default from PyTorch's FA3 index for the base image's CUDA (cuXYZ from torch.version.cuda),
    or a page given with --build-arg; no dependencies, torch held, import checked when installed,
    SDPA when no wheel matches."""
    args = [rest for word, rest in instructions() if word == "ARG"]
    assert 'FLASH_ATTN_3_FIND_LINKS=""' in args
    fa3 = [a for a in pip_installs() if "flash_attn_3" in a]
    assert len(fa3) == 1
    assert {"--no-deps", "--constraint", "--find-links", "--no-index"} <= set(fa3[0])
    run = " ".join(next(rest for word, rest in instructions() if word == "RUN" and "flash_attn_3" in rest).split())
    assert "https://download.pytorch.org/whl/$(python -c \"import torch; print('cu' + " \
           "torch.version.cuda.replace('.', ''))\")/flash-attn-3/" in run
    # Installed: it must import. Not installed: the build goes on (the else branch), saying so.
    assert re.search(r"elif python -m pip install [^;]*flash_attn_3 ; then python -c \"import flash_attn_interface;"
                     r"[^\"]*assert fa3_available\(\)\"; else echo \"no flash_attn_3 wheel", run), run


def test_lrzip_and_brotli_are_installed_and_checked():
    ins = instructions()
    run = " ".join(rest for word, rest in ins if word == "RUN")
    assert re.search(r"apt-get install[^&]*\blrzip\b[^&]*\bbrotli\b", run)
    assert "lrzip --version" in run and "brotli --version" in run
    brotli = [a for a in pip_installs() if "brotli" in a]
    assert len(brotli) == 1 and "--constraint" in brotli[0]
    assert "import brotli" in run


def test_git_non_root_workdir_volume_and_default_command():
    ins = instructions()
    run = " ".join(rest for word, rest in ins if word == "RUN")
    assert re.search(r"apt-get install[^&]*\bgit\b", run)
    assert re.search(r"apt-get install[^&]*\blrzip\b", run)  # the lrzip compressors (docs/post-training.md)
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("WORKDIR", "/workspace") in ins
    assert any(word == "VOLUME" and "/workspace" in rest for word, rest in ins)
    cmd = [rest for word, rest in ins if word == "CMD"]
    assert cmd == ['["dvc", "repro"]']


# --------------------------------------------------------------------------- .dockerignore


def dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        regex = fnmatch.translate(pat).replace(".*", "[^/]*")
        regex = regex.replace("[^/]*[^/]*/", "(?:.*/)?")  # `**/` spans directories
        if any(re.fullmatch(regex, p) for p in prefixes):
            ignored = not negate
    return ignored


@pytest.mark.parametrize(
    "path",
    [".git/HEAD", ".venv/bin/python", ".venv-ci/bin/python", "data/manifest.json",
     "runs/seed_1337/train/final.pt", "metrics/summary.json", ".dvc/cache/files/md5/ab/cd",
     "dvc.lock", "tests/conftest.py", "pipeline/__pycache__/config.cpython-311.pyc"],
)
def test_dockerignore_keeps_workspace_out(path):
    assert dockerignored(path)


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "pipeline/config.py", "stages/cli.py"])
def test_dockerignore_lets_install_sources_in(path):
    assert not dockerignored(path)


def test_copied_paths_exist_and_are_in_the_build_context():
    for word, rest in instructions():
        if word == "COPY":
            *sources, _dest = shlex.split(rest)
            for src in sources:
                assert (ROOT / src).exists(), src
                assert not dockerignored(src), src


def test_readme_and_smoke_script_state_the_python_pyproject_requires():
    minimum = re.fullmatch(r">=(\d+\.\d+)", pyproject()["project"]["requires-python"]).group(1)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"only Python ({minimum} or newer)" in readme
    assert f"only Python (>= {minimum})" in (ROOT / "scripts" / "smoke").read_text(encoding="utf-8")
    assert sys.version_info >= tuple(int(x) for x in minimum.split("."))
