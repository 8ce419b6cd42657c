"""`make setup` installs the Debian packages of [tool.gtcdemo] apt, and only those that are missing."""

from __future__ import annotations

from gtcdemo import install


def test_the_apt_packages_setup_installed_are_seen_as_installed() -> None:
    """Packages are checked by name with dpkg, not by a program of that name on PATH: chromium-driver's program is
    chromedriver, so a PATH check saw it missing forever and ran apt-get (as root) on every setup."""
    assert "chromium-driver" in install.settings()["apt"]
    assert [p for p in install.settings()["apt"] if not install.apt_installed(p)] == []
    assert not install.apt_installed("gtcdemo-no-such-package")
