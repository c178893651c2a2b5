"""Audit the installed Python packages against the advisories PyPI publishes.

``pip-audit`` asks PyPI (or OSV) about each exact version; where only PyPI's project pages are
reachable (this project's build machines), it skips every package. PyPI's project JSON
(``/pypi/<name>/json``) still lists the known vulnerabilities of the *latest* release, so a
package installed at its latest release can be audited exactly; one held back (a pin) cannot,
and is listed with its version so that a person can look it up.

    .venv/bin/python tools/audit_deps.py [--json]

Exit status: 0 nothing known; 1 a known vulnerability in an installed version; 2 PyPI could not
be reached at all (nothing was audited).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata

PYPI_JSON = "https://pypi.org/pypi/{name}/json"
SELF = "article-qa"


@dataclass
class Finding:
    name: str
    version: str
    status: str  # "audited", "behind", "not-on-pypi", "unreachable"
    latest: str | None = None
    vulnerabilities: list[dict[str, object]] = field(default_factory=list)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> list[tuple[str, str]]:
    """(canonical name, version) of every installed distribution but this project."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) != SELF:
            seen[canonical(name)] = dist.version
    return sorted(seen.items())


def fetch_pypi(name: str) -> dict[str, object] | None:
    """PyPI's project JSON, or None if PyPI has no such project; raises OSError if unreachable."""
    try:
        with urllib.request.urlopen(PYPI_JSON.format(name=name), timeout=20) as r:
            return dict(json.load(r))
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def classify(name: str, version: str, project: dict[str, object] | None) -> Finding:
    """What PyPI's project JSON says about ``name==version``."""
    if project is None:
        return Finding(name, version, "not-on-pypi")
    info = project.get("info")
    latest = str(info.get("version")) if isinstance(info, dict) else None
    if latest != version:
        return Finding(name, version, "behind", latest)
    vulns = [
        v for v in project.get("vulnerabilities") or []  # type: ignore[attr-defined]
        if isinstance(v, dict) and not v.get("withdrawn")
    ]
    return Finding(name, version, "audited", latest, vulns)


def audit(packages: Iterable[tuple[str, str]], fetch: Callable[[str], dict[str, object] | None]) -> list[Finding]:
    def one(nv: tuple[str, str]) -> Finding:
        try:
            return classify(nv[0], nv[1], fetch(nv[0]))
        except (OSError, ValueError):
            return Finding(nv[0], nv[1], "unreachable")

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, list(packages)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    args = p.parse_args(argv)
    findings = audit(installed(), fetch_pypi)
    by = {s: [f for f in findings if f.status == s] for s in ("audited", "behind", "not-on-pypi", "unreachable")}
    vulnerable = [f for f in by["audited"] if f.vulnerabilities]
    if args.json:
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        print(f"{len(findings)} installed packages: {len(by['audited'])} at their latest release and audited, "
              f"{len(by['behind'])} held back (not auditable here), {len(by['not-on-pypi'])} not on PyPI, "
              f"{len(by['unreachable'])} unreachable")
        for f in vulnerable:
            for v in f.vulnerabilities:
                ids = ", ".join([str(v.get("id"))] + [str(a) for a in v.get("aliases") or []])  # type: ignore[attr-defined]
                print(f"VULNERABLE {f.name} {f.version}: {ids}; fixed in {v.get('fixed_in') or 'no release yet'}")
        for f in by["behind"]:
            print(f"held back: {f.name} {f.version} (latest {f.latest})")
        for f in by["not-on-pypi"] + by["unreachable"]:
            print(f"{f.status}: {f.name} {f.version}")
        if not vulnerable:
            print("no known vulnerability in the audited packages")
    if vulnerable:
        return 1
    return 2 if findings and len(by["unreachable"]) == len(findings) else 0


if __name__ == "__main__":
    sys.exit(main())
