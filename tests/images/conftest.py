"""Fixtures of the image tests: the images built with podman from the real Dockerfiles.

The images come from `scripts/build_images.py` (`make images` runs it before pytest; here it is called
again and finds every image cached by its content key, or builds what changed). A missing podman or a
failing build fails every test of this folder that needs an image: nothing here skips.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from imagetools import BuiltImage, build_images, podman


@pytest.fixture(scope="session")
def images() -> dict[str, BuiltImage]:
    """Every image of scripts/build_images.py, built (or found in the cache) once per session."""
    try:
        results = build_images.build(list(build_images.IMAGES))
    except (build_images.BuildError, RuntimeError) as error:
        pytest.fail(f"the images did not build: {error}")
    return {r.name: BuiltImage(r.name, r.reference, r.size, r.seconds) for r in results}


@pytest.fixture
def containers() -> Iterator[list[str]]:
    """Names of containers a test started; removed (forcibly) at its end."""
    names: list[str] = []
    yield names
    for name in names:
        podman("rm", "--force", "--time", "5", name, check=False, timeout=60)
