"""ament_python packaging: `colcon build` installs the runtime package, the
launch and config files and the ament resource marker, and puts the node
executable under lib/csk_ros where `ros2 run` / `ros2 launch` look for it.
Only the runtime (csk_ros) is installed; training/ and engines/ are offline tools."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "csk_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    # csk_ros and its subpackages (csk_ros.backends, ...); a bare [PACKAGE] would
    # silently leave the subpackages out of the install.
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/scripts", ["scripts/dds_env.sh"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="csk_ros developers",
    maintainer_email="dev@csk-ros.invalid",
    description="RGB-thermal segmentation node with IR-only fallback",
    license="Apache-2.0",
    entry_points={"console_scripts": [f"segment_node = {PACKAGE}.node.segment_node:main"]},
)
