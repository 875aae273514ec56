"""The image's locked requirements cover the package's runtime dependencies (no Docker needed)."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import REPO


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_every_runtime_dependency_is_locked_with_hashes_for_the_image() -> None:
    """A dependency added to pyproject.toml without `scripts/image lock` would be missing from the image: the
    Containerfile installs image-requirements.txt only, with --require-hashes."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {_name(requirement) for requirement in project["dependencies"]}
    lock = (REPO / "image-requirements.txt").read_text(encoding="utf-8")
    locked = {match.group(1).lower() for match in re.finditer(r"^([A-Za-z0-9_.-]+)==\S+ \\$", lock, re.MULTILINE)}
    assert wanted - locked == set()
