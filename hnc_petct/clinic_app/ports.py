"""One place for our operators' port declarations.

An operator lists its ports as class attributes instead of writing ``setup``::

    class PetSuvOperator(PortsOperator):
        INPUTS = ("pet_series", "pet_image")
        OUTPUTS = ("suv_image",)

``OPTIONAL_OUTPUTS`` get ``ConditionType.NONE`` (a downstream operator may not be connected, e.g. the
geometry port in the inspect app). Ports that depend on construction arguments come from overriding
:meth:`PortsOperator.ports`.
"""

from __future__ import annotations

from monai.deploy.core import ConditionType, Operator


class PortsOperator(Operator):
    """``Operator`` whose ``setup`` declares ``INPUTS``, ``OUTPUTS`` and ``OPTIONAL_OUTPUTS`` (names, in order)."""

    INPUTS: tuple[str, ...] = ()
    OUTPUTS: tuple[str, ...] = ()
    OPTIONAL_OUTPUTS: tuple[str, ...] = ()

    def ports(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """(inputs, outputs, optional outputs) of this instance; the class attributes by default."""
        return tuple(self.INPUTS), tuple(self.OUTPUTS), tuple(self.OPTIONAL_OUTPUTS)

    def setup(self, spec) -> None:
        inputs, outputs, optional = self.ports()
        for name in inputs:
            spec.input(name)
        for name in outputs:
            spec.output(name)
        for name in optional:
            spec.output(name).condition(ConditionType.NONE)
