"""tools/audit_deps.py: how PyPI's project JSON is read (no network: a fake fetcher)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "audit_deps.py"


@pytest.fixture(scope="module")
def audit_deps() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_deps"] = module
    spec.loader.exec_module(module)
    return module


VULN = {"id": "PYSEC-1", "aliases": ["CVE-1"], "fixed_in": ["2.1"], "withdrawn": None}
PROJECTS = {
    "good": {"info": {"version": "1.0"}, "vulnerabilities": []},
    "bad": {"info": {"version": "2.0"}, "vulnerabilities": [VULN, {**VULN, "id": "OLD", "withdrawn": "2024"}]},
    "old": {"info": {"version": "3.0"}, "vulnerabilities": [VULN]},
}


def fake_fetch(name: str) -> dict[str, object] | None:
    if name == "offline":
        raise OSError("unreachable")
    return PROJECTS.get(name)  # type: ignore[return-value]


def test_classify_and_audit(audit_deps: ModuleType) -> None:
    found = {
        f.name: f
        for f in audit_deps.audit(
            [("good", "1.0"), ("bad", "2.0"), ("old", "2.9"), ("local", "0.1"), ("offline", "1")], fake_fetch
        )
    }
    assert found["good"].status == "audited" and found["good"].vulnerabilities == []
    assert found["bad"].status == "audited" and [v["id"] for v in found["bad"].vulnerabilities] == ["PYSEC-1"]
    assert found["old"].status == "behind" and found["old"].latest == "3.0"
    assert found["local"].status == "not-on-pypi"
    assert found["offline"].status == "unreachable"


def test_exit_status(
    audit_deps: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(audit_deps, "fetch_pypi", fake_fetch)
    for packages, code in (([("good", "1.0")], 0), ([("good", "1.0"), ("bad", "2.0")], 1), ([("offline", "1")], 2)):
        monkeypatch.setattr(audit_deps, "installed", lambda packages=packages: packages)
        assert audit_deps.main([]) == code
    assert "VULNERABLE bad 2.0: PYSEC-1, CVE-1" in capsys.readouterr().out
    assert audit_deps.canonical("Foo_Bar.baz") == "foo-bar-baz"
