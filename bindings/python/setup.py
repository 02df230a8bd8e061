"""Only for the self-contained wheel (make wheel), which carries the library
and the procspy command inside the package: pyproject.toml says everything
else. Without them beside __init__.py (pip install bindings/python) the
package is pure Python and this changes nothing."""

import os

from setuptools import Distribution, setup

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
CARRIES_LIBRARY = os.path.exists(os.path.join(HERE, "src", "procspy", "libprocspy.so.0"))


class CarriesLibrary(Distribution):
    """Binary files inside: installed as platform files (platlib), as an
    extension module's would be, though there is none."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """One platform, but any Python 3: ctypes, no Python ABI."""

    def get_tag(self) -> tuple[str, str, str]:
        return "py3", "none", super().get_tag()[2]


if CARRIES_LIBRARY:
    setup(distclass=CarriesLibrary, cmdclass={"bdist_wheel": PlatformWheel})
else:
    setup()
