"""Sets of ISO 3166-2 regions: a few codes, everywhere, or everywhere but a few codes.

Rulings apply in their `regions` (none: nationwide); a stay granted in part holds everywhere
but its `remaining_regions`. Where a policy is blocked is built from such sets by union and
difference, so the algebra is closed over finite and co-finite sets.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.envelope import subdivisions


@dataclass(frozen=True, slots=True)
class Area:
    """`codes`, or (with `but`) everywhere except `codes`."""

    codes: frozenset[str] = frozenset()
    but: bool = False

    @staticmethod
    def of(regions: Iterable[str]) -> Area:
        """The regions given; none means nationwide."""
        codes = frozenset(regions)
        return Area(codes) if codes else EVERYWHERE

    @staticmethod
    def except_(regions: Iterable[str]) -> Area:
        """Everywhere except the regions given."""
        return Area(frozenset(regions), but=True)

    @property
    def empty(self) -> bool:
        return not self.but and not self.codes

    @property
    def everywhere(self) -> bool:
        return self.but and not self.codes

    def __invert__(self) -> Area:
        return Area(self.codes, not self.but)

    def __or__(self, other: Area) -> Area:
        if not self.but and not other.but:
            return Area(self.codes | other.codes)
        if self.but and other.but:
            return Area(self.codes & other.codes, but=True)
        given, excluded = (other, self) if self.but else (self, other)
        return Area(excluded.codes - given.codes, but=True)

    def __and__(self, other: Area) -> Area:
        return ~(~self | ~other)

    def __sub__(self, other: Area) -> Area:
        return self & ~other

    def listed(self, country: str = "US") -> list[str]:
        """The codes it covers, sorted; `everywhere but` lists the country's other subdivisions."""
        if not self.but:
            return sorted(self.codes)
        return sorted(subdivisions(country) - self.codes)


NOWHERE = Area()
EVERYWHERE = Area(but=True)
