"""Print the project's requirements (and its dev extra), one a line, for pip -r.

Norse is left out: set-up installs it alone with --no-deps, because it declares
torchvision, which it never imports and which has no build for the CPU torch used here.
"""

import sys
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
reqs = list(project["dependencies"])
if "--dev" in sys.argv:
    reqs += project["optional-dependencies"]["dev"]
reqs = [r for r in reqs if not r.lower().startswith("norse")]
reqs += ["nir", "nirtorch"]  # norse's own requirements, besides torchvision (norse imports both)
print("\n".join(reqs))
