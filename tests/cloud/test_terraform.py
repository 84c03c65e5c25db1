"""terraform/ checked without Terraform or a cloud: it parses (python-hcl2), keeps our house rules, passes checkov.

House rules: every variable has a description and a type, every output a description; every bucket
has uniform access, enforced public access prevention and lifecycle rules; the worker service account
holds no primitive role and nothing at project level beyond roles/dataflow.worker; every checkov skip
says why. checkov lives in its own venv (.venv-tools, made by `make test`/`make tools`) because its
pins would change packages of .venv.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"
WORKER = "worker_member"  # local.worker_member: "serviceAccount:<worker email>"
PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
REQUIRED_APIS = {"dataflow", "healthcare", "artifactregistry", "storage", "compute", "iam"}


def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and keys; drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {unquote(k): _clean(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return unquote(node)


@pytest.fixture(scope="module")
def modules() -> dict[str, dict]:
    files = sorted(TERRAFORM.glob("*.tf"))
    assert files, "terraform/ holds no .tf files"
    return {f.name: _clean(hcl2.loads(f.read_text())) for f in files}


def blocks(modules: dict[str, dict], kind: str) -> dict[str, dict]:
    """All blocks of one kind (variable, output, locals...), by name, over every file."""
    found: dict[str, dict] = {}
    for parsed in modules.values():
        for entry in parsed.get(kind, []):
            found.update(entry)
    return found


def resources(modules: dict[str, dict], rtype: str) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for parsed in modules.values():
        for entry in parsed.get("resource", []):
            found.update(entry.get(rtype, {}))
    return found


def test_every_variable_has_a_description_and_a_type(modules) -> None:
    variables = blocks(modules, "variable")
    assert "project_id" in variables and "region" in variables
    for name, body in variables.items():
        assert str(body.get("description", "")).strip(), f"variable {name}: no description"
        assert body.get("type"), f"variable {name}: no type"


def test_every_output_has_a_description(modules) -> None:
    outputs = blocks(modules, "output")
    assert {"temp_location", "worker_service_account", "dicomweb_url", "docker_repository"} <= set(outputs)
    for name, body in outputs.items():
        assert str(body.get("description", "")).strip(), f"output {name}: no description"


def test_required_apis_are_enabled(modules) -> None:
    apis = blocks(modules, "locals")["apis"]
    listed = re.findall(r"([a-z]+)\.googleapis\.com", json.dumps(apis))
    assert REQUIRED_APIS <= set(listed), f"missing: {REQUIRED_APIS - set(listed)}"
    assert "google_project_service" in json.dumps(modules)


def test_buckets_are_private_uniform_and_have_lifecycle_rules(modules) -> None:
    buckets = resources(modules, "google_storage_bucket")
    assert {"temp", "outputs", "checkpoints"} <= set(buckets)
    for name, body in buckets.items():
        assert body.get("uniform_bucket_level_access") is True, f"bucket {name}: uniform access off"
        assert body.get("public_access_prevention") == "enforced", f"bucket {name}: public access not prevented"
        assert body.get("lifecycle_rule"), f"bucket {name}: no (static) lifecycle rule"
    assert buckets["outputs"].get("versioning", [{}])[0].get("enabled") is True, "reruns overwrite outputs in place"


def _grants(modules: dict[str, dict]) -> list[tuple[str, str, dict]]:
    """Every IAM member/binding resource: (resource type, role, body)."""
    found = []
    for parsed in modules.values():
        for entry in parsed.get("resource", []):
            for rtype, named in entry.items():
                if re.search(r"_iam_(member|binding)$", rtype):
                    found += [(rtype, body["role"], body) for body in named.values()]
    return found


def _is_worker(body: dict) -> bool:
    return WORKER in str(body.get("member", "")) + str(body.get("members", ""))


def test_worker_service_account_has_least_privilege(modules) -> None:
    worker_grants = [(rtype, role, body) for rtype, role, body in _grants(modules) if _is_worker(body)]
    assert not PRIMITIVE_ROLES & {role for _, role, _ in worker_grants}, "the worker must hold no primitive role"
    project_roles = {role for rtype, role, _ in worker_grants if rtype.startswith("google_project_iam")}
    assert project_roles == {"roles/dataflow.worker"}, f"project-level worker roles: {project_roles}"
    by_type = {(rtype, role) for rtype, role, _ in worker_grants}
    assert ("google_healthcare_dicom_store_iam_member", "roles/healthcare.dicomEditor") in by_type
    assert ("google_artifact_registry_repository_iam_member", "roles/artifactregistry.reader") in by_type
    object_grants = [body for rtype, role, body in worker_grants
                     if rtype == "google_storage_bucket_iam_member" and role.startswith("roles/storage.object")]
    assert object_grants and all("each.value" in str(b["bucket"]) for b in object_grants)
    buckets = blocks(modules, "locals")["worker_buckets"]
    assert set(buckets) == {"temp", "outputs", "checkpoints"}, "object access on exactly the project's three buckets"


def test_no_primitive_role_is_granted_anywhere(modules) -> None:
    assert not PRIMITIVE_ROLES & {role for _, role, _ in _grants(modules)}


def test_dicom_store_notifications_follow_the_variable(modules) -> None:
    store = resources(modules, "google_healthcare_dicom_store")["this"]
    dynamic = store["dynamic"][0]["notification_config"]
    assert "var.dicom_store_notifications" in dynamic["for_each"]
    topic = resources(modules, "google_pubsub_topic")["dicom"]
    assert "var.dicom_store_notifications" in str(topic["count"])


def test_flex_template_points_at_the_worker_image_and_its_parameters_are_bonehub_options(modules) -> None:
    template = resources(modules, "google_storage_bucket_object")["flex_template"]
    content = str(template["content"])
    assert "jsonencode" in content and "var.worker_image" in content and "PYTHON" in content
    spec = importlib.util.spec_from_file_location("docker_flex_main", ROOT / "docker" / "flex_main.py")
    flex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flex)
    options = flex.run_options()
    for parameter in blocks(modules, "locals")["flex_parameters"]:
        name = parameter["name"]
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), f"{name}: not a valid template parameter name"
        assert "--" + name.replace("_", "-") in options, f"flex parameter {name} is no `bonehub run` option"


def test_every_checkov_skip_gives_a_reason() -> None:
    skips = [line.strip() for f in TERRAFORM.glob("*.tf") for line in f.read_text().splitlines() if "checkov:skip" in line]
    for skip in skips:
        assert re.fullmatch(r"#checkov:skip=CKV2?_[A-Z]+_\d+:.{20,}", skip), f"skip without a reason: {skip}"


def test_checkov_passes_with_no_failed_check() -> None:
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV} missing: `make test` (or `make tools`) installs checkov into .venv-tools")
    result = subprocess.run([CHECKOV, "-d", TERRAFORM, "--framework", "terraform", "--skip-download", "-o", "json"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 20, f"checkov checked too little to mean anything: {summary}"
    assert result.returncode == 0, result.stderr[-2000:]


def test_checkov_does_fail_an_unsafe_bucket(tmp_path) -> None:
    """The scan above means something: the same call fails a public, non-uniform bucket."""
    if not CHECKOV.is_file():
        pytest.fail(f"{CHECKOV} missing: `make test` (or `make tools`) installs checkov into .venv-tools")
    (tmp_path / "bad.tf").write_text('resource "google_storage_bucket" "b" {\n  name = "b"\n  location = "US"\n'
                                     '  uniform_bucket_level_access = false\n}\n')
    result = subprocess.run([CHECKOV, "-d", tmp_path, "--framework", "terraform", "--skip-download", "-o", "json"],
                            capture_output=True, text=True, timeout=600)
    failed = {c["check_id"] for c in json.loads(result.stdout)["results"]["failed_checks"]}
    assert {"CKV_GCP_29", "CKV_GCP_114"} <= failed and result.returncode != 0
