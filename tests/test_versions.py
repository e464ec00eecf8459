"""The installed stack stays inside the ranges MLflow's Keras support was tested with.

MLflow warns at autolog time when keras or tensorflow is newer than the newest version
its Keras flavour was tested against. The project's pins (pyproject.toml) are chosen so
that this never happens; this test fails when an upgrade breaks that promise.
"""

from importlib.metadata import version

import pytest
from mlflow.ml_package_versions import _ML_PACKAGE_VERSIONS
from packaging.version import Version


@pytest.mark.parametrize("package", ["keras", "tensorflow"])
def test_installed_version_is_within_mlflow_tested_range(package):
    tested = _ML_PACKAGE_VERSIONS[package]["autologging"]
    installed = Version(version(package))
    assert Version(tested["minimum"]) <= installed <= Version(tested["maximum"]), (
        f"{package} {installed} is outside MLflow {version('mlflow')}'s tested range "
        f"{tested['minimum']}..{tested['maximum']}; adjust the pins in pyproject.toml"
    )
