"""L8: setup.cfg's lower bounds exclude the releases with known advisories."""

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXED = {  # first release past the advisory
    "flask": (3, 1, 1), "werkzeug": (3, 1, 4), "jinja2": (3, 1, 6), "pymysql": (1, 1, 1),
    "requests": (2, 32, 4), "urllib3": (2, 5), "cryptography": (44, 0, 1), "gunicorn": (23,),
}


def _floors() -> dict:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    out = {}
    for line in cfg["options"]["install_requires"].strip().splitlines():
        m = re.match(r"([A-Za-z0-9_.\-]+)\s*>=\s*([0-9.]+)", line.strip())
        if m:
            out[m.group(1).lower()] = tuple(int(x) for x in m.group(2).split("."))
    return out


def test_floors_are_past_known_advisories():
    floors = _floors()
    for name, fixed in FIXED.items():
        assert name in floors, f"{name} has no lower bound"
        assert floors[name] >= fixed, f"{name}>={floors[name]} allows a vulnerable release"


def test_pip_audit_script_says_when_it_could_not_check():
    text = (ROOT / "scripts" / "pip_audit").read_text()
    assert "NOT CHECKED" in text and "exit 3" in text
