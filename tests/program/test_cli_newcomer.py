"""Newcomer paths of the command line, run as a user runs them (a subprocess in a fresh directory):
commands find the database the gateway or demo uses, and every mistake is one clear line, never a
traceback, with a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from program.cli import EXIT_USAGE

ROOT = Path(__file__).resolve().parents[2]


def anxin(cwd: Path, *args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANXIN_")}
    return subprocess.run([sys.executable, "-m", "program.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, input=stdin, env={**clean, "PYTHONPATH": str(ROOT), **env})


def one_clear_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    return lines[0]


def test_read_commands_do_not_create_an_empty_database(tmp_path: Path) -> None:
    line = one_clear_line(anxin(tmp_path, "devices"))
    assert "no database at var/anxin.db" in line and "ANXIN_DATABASE_URL" in line
    assert not (tmp_path / "var" / "anxin.db").exists()
    assert "no database" in one_clear_line(anxin(tmp_path, "drills", "2026Q4"))


def test_commands_find_the_database_the_gateway_recorded(tmp_path: Path) -> None:
    """The demo and the gateway record their database URL; later commands in that directory use it."""
    db = tmp_path / "elsewhere" / "demo.db"
    registry = tmp_path / "registry.yaml"
    registry.write_text(yaml.safe_dump({
        "institutions": [{"id": "k1", "name": "幼儿园", "district": "思明区"}],
        "devices": [{"id": "sos1", "institution": "k1", "profile": "zigbee2mqtt-sos-button"}]},
        allow_unicode=True), encoding="utf-8")
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "anxin-database.txt").write_text(f"sqlite:///{db}\n")  # as `anxin gateway` writes it
    out = anxin(tmp_path, "registry-import", str(registry))
    assert out.returncode == 0 and str(db) in out.stdout, out.stderr
    out = anxin(tmp_path, "devices")
    assert out.returncode == 0 and "sos1" in out.stdout, out.stderr
    assert not (tmp_path / "var" / "anxin.db").exists()
    # the environment still wins
    other = tmp_path / "other.db"
    assert "no database" in one_clear_line(anxin(tmp_path, "devices", ANXIN_DATABASE_URL=f"sqlite:///{other}"))


def test_bad_registry_files_get_one_line(tmp_path: Path) -> None:
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "anxin-database.txt").write_text(f"sqlite:///{tmp_path}/x.db\n")
    cases = {
        "not: [valid": "not valid YAML",
        "- just\n- a list\n": "must be a YAML mapping",
        "devices: [{id: d1, institution: nowhere}]": "unknown institution 'nowhere'",
        "institutions: [{id: k1, name: 园}]\ndevices: [{id: d1, institution: k1, profile: no-such}]":
            "unknown profile 'no-such'",
        "institutions: [{name: 园}]": "lacks 'id'",
        "drills: [{institution: k1, starts_at: tomorrow, ends_at: later}]": "not a time",
    }
    for text, expected in cases.items():
        f = tmp_path / "bad.yaml"
        f.write_text(text, encoding="utf-8")
        line = one_clear_line(anxin(tmp_path, "registry-import", str(f)))
        assert line.startswith("anxin registry-import: ") and expected in line, (text, line)
    assert "cannot read" in one_clear_line(anxin(tmp_path, "registry-import", str(tmp_path / "missing.yaml")))


def test_a_quarter_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    for bad in ("2026Q5", "2026Q0", "Q4", "2026-4"):
        out = anxin(tmp_path, "drills", bad)
        assert out.returncode == EXIT_USAGE
        assert "2026Q4" in one_clear_line(out)


def test_user_add_and_key_from_the_command_line(tmp_path: Path) -> None:
    env = {"ANXIN_DATABASE_URL": f"sqlite:///{tmp_path}/u.db"}
    registry = tmp_path / "r.yaml"
    registry.write_text("institutions: [{id: k1, name: 园, district: 思明区}]\n", encoding="utf-8")
    assert anxin(tmp_path, "registry-import", str(registry), **env).returncode == 0
    out = anxin(tmp_path, "user", "add", "zhang", "--role", "institution", "--institution", "k1",
                stdin="a-long-password\n", **env)
    assert out.returncode == 0, out.stderr
    assert "needs an institution" in one_clear_line(anxin(tmp_path, "user", "add", "li", "--role", "institution",
                                                          stdin="a-long-password\n", **env))
    assert "no institution 'k9'" in one_clear_line(anxin(tmp_path, "user", "add", "li", "--role", "institution",
                                                          "--institution", "k9", stdin="a-long-password\n", **env))
    assert "at least 10" in one_clear_line(anxin(tmp_path, "user", "add", "li", "--role", "admin",
                                                 stdin="short\n", **env))
    assert "exists" in one_clear_line(anxin(tmp_path, "user", "add", "zhang", "--role", "admin",
                                            stdin="a-long-password\n", **env))
    key = anxin(tmp_path, "user", "key", "zhang", **env)
    assert key.returncode == 0 and key.stdout.startswith("ak_")
    listed = anxin(tmp_path, "user", "list", **env)
    assert "zhang\tinstitution\tk1" in listed.stdout
