"""A wheel built from the repository works where the source tree is not: it ships the
recipes (loadable by name), the emoji query set, the web page and ``py.typed``."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import retrievalkit
from retrievalkit.run.recipes import shipped_recipes

REPO = Path(retrievalkit.__file__).resolve().parents[1]
CHECK = """
import json, sys
from pathlib import Path
import retrievalkit
from retrievalkit.compare.plan import load_variants
from retrievalkit.eval.query_set import emoji_query_file, load_query_set
from retrievalkit.run.config import load_config
from retrievalkit.run.recipes import resolve_recipe, shipped_recipes
package = Path(retrievalkit.__file__).parent
names = shipped_recipes()
for name in names:
    load_config(name)  # by name, from inside the installed package
print(json.dumps({
    "package": str(package),
    "recipes": names,
    "demo_recipe": str(resolve_recipe("emoji_vsepp")),
    "queries": len(load_query_set(emoji_query_file())),
    "ablation_rows": len(load_variants("mfsr_emoji_ablation")),  # configs/variants by name
    "typed": (package / "py.typed").exists(),
    "page": (package / "serve" / "static" / "index.html").exists(),
}))
"""


def _copy_source(dest: Path) -> Path:
    """The files a wheel is built from, without caches or build leftovers."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    shutil.copytree(
        REPO / "retrievalkit",
        dest / "retrievalkit",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return dest


@pytest.mark.slow
@pytest.mark.debian_data  # `data info emoji` reads the font and CLDR packages
def test_wheel_in_a_fresh_venv_runs_data_info_and_loads_every_recipe(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    (tmp_path / "src").mkdir()
    source = _copy_source(tmp_path / "src")
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("retrievalkit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # torch and the other dependencies from this environment, not from a registry; its
    # editable install of retrievalkit is not picked up (.pth files there are not run)
    (site / "shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    run = {"env": env, "cwd": tmp_path, "capture_output": True, "text": True, "timeout": 120}
    checked = subprocess.run([str(python), "-c", CHECK], **run)
    assert checked.returncode == 0, checked.stderr
    facts = json.loads(checked.stdout.strip().splitlines()[-1])
    assert Path(facts["package"]).is_relative_to(venv)  # the wheel, not the source tree
    assert facts["recipes"] == shipped_recipes() and "emoji_vsepp" in facts["recipes"]
    assert Path(facts["demo_recipe"]).is_relative_to(venv)
    assert facts["queries"] > 100 and facts["typed"] and facts["page"]
    assert facts["ablation_rows"] == 5
    info = subprocess.run([str(venv / "bin" / "retrievalkit"), "data", "info", "emoji"], **run)
    assert info.returncode == 0, info.stderr
    assert "emoji" in info.stdout
