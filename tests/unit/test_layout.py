"""Every module in resolver/ and discovery/ has a unit test file named for it:
``tests/unit/<package path>/test_<module>.py`` or ``test_<module>_<topic>.py``. A reader finds a
module's tests by its name, and a new module without tests fails here."""

from __future__ import annotations

from pathlib import Path

from tests.unit.modules import ROOT, UNIT, module_files

# Modules whose behaviour is exercised by a test elsewhere named for them rather than under
# tests/unit. Keep this short: each entry needs a reason.
ELSEWHERE: dict[str, str] = {
    # ``explain`` runs the real sources, handler and forward chain; its test (named for it)
    # already calls it in-process against hosts files, a loopback dnsmasq and registries
    # built in the test, which is what a unit test of it would repeat.
    "resolver/ops/explain.py": "tests/integration/test_explain.py",
    # Label and convention parsing: one file exercises both, container inspect data in, names out.
    "discovery/docker/conventions.py": "tests/unit/discovery/docker/test_names_from_labels.py",
    "discovery/docker/labels.py": "tests/unit/discovery/docker/test_names_from_labels.py",
    # The static-records source and its setup answer over real sockets, reloaded by SIGHUP.
    "discovery/static/setup.py": "tests/integration/test_static_records.py",
    "discovery/static/source.py": "tests/integration/test_static_records.py",
    "resolver/answer/chase.py": "tests/integration/test_static_records.py",
    # Forwarding features whose behaviour only shows against real peers (a looping dnsmasq, a
    # DoT Unbound, Unbound's own local zones in the same run).
    "resolver/forward/loop.py": "tests/integration/test_forward_loop.py",
    "resolver/forward/tls.py": "tests/integration/test_forward_tls.py",
    "resolver/forward/special_names.py": "tests/integration/test_special_names.py",
    # The D-Bus side needs a real systemd-resolved on its own bus, in a namespace.
    "resolver/resolved/bus.py": "tests/integration/test_resolved.py",
    "resolver/resolved/integration.py": "tests/integration/test_resolved.py",
    "resolver/resolved/link.py": "tests/integration/test_resolved.py",
    "resolver/resolved/stub.py": "tests/integration/test_resolved.py",
}


def unit_tests_for(module: Path) -> list[Path]:
    relative = module.relative_to(ROOT)
    folder = UNIT / relative.parent
    return sorted([*folder.glob(f"test_{module.stem}.py"),
                   *folder.glob(f"test_{module.stem}_*.py")])


def untested() -> list[str]:
    missing: list[str] = []
    for module in module_files():
        if module.name in ("__init__.py", "__main__.py"):
            continue
        relative = str(module.relative_to(ROOT))
        if relative in ELSEWHERE:
            assert (ROOT / ELSEWHERE[relative]).is_file(), ELSEWHERE[relative]
            continue
        if not unit_tests_for(module):
            missing.append(relative)
    return missing


def test_every_module_has_a_unit_test_file() -> None:
    missing = untested()
    assert not missing, "no tests/unit/<path>/test_<module>.py for:\n" + "\n".join(missing)


def test_the_check_sees_modules_and_their_tests() -> None:
    # Against a vacuous pass: the walk finds the modules, and a known test file for one.
    modules = {str(path.relative_to(ROOT)) for path in module_files()}
    assert "discovery/swarm/model.py" in modules and len(modules) > 50
    assert [p.name for p in unit_tests_for(ROOT / "resolver/forward/upstreams.py")] == [
        "test_upstreams.py", "test_upstreams_routing.py"]
