"""setuptools ``build_py`` that also places ``hnc_petct_nnunet.pth`` at the root of the wheel, i.e. in
site-packages (regular and editable installs); see :mod:`nnunet_plugins._zeroconf`."""

from __future__ import annotations

import os

from setuptools.command.build_py import build_py

PTH = "hnc_petct_nnunet.pth"


class BuildPyWithPth(build_py):
    def run(self) -> None:
        super().run()
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), PTH)
        self.copy_file(src, os.path.join(self.build_lib, PTH), preserve_mode=False)
        if getattr(self, "editable_mode", False):
            # PEP 660 editable wheels take only the finder from build_lib; setuptools points
            # install_lib at the unpacked wheel, whose root lands in site-packages.
            unpacked = self.get_finalized_command("install").install_lib
            self.copy_file(src, os.path.join(unpacked, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]

    def get_output_mapping(self) -> dict[str, str]:
        mapping = dict(super().get_output_mapping())
        mapping[os.path.join(self.build_lib, PTH)] = os.path.join(os.path.dirname(os.path.abspath(__file__)), PTH)
        return mapping
