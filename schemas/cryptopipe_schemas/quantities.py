"""Kubernetes resource quantities ("250m", "1.5", "512Mi", "2Gi") as exact numbers.

One parser for every reader: the spec's validation (its pattern), the operator's drift check
(`1Gi` == `1024Mi`) and the Spark settings it derives from a request.
"""

from __future__ import annotations

import re
from decimal import Decimal

# Suffix: power of 10 (decimal SI) or of 2 (binary).
_DECIMAL = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
FACTORS = {suffix: Decimal(10) ** power for suffix, power in _DECIMAL.items()} | {
    suffix: Decimal(2) ** power for suffix, power in _BINARY.items()
}
_QUANTITY = re.compile(r"([+-]?[0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
# What a spec may request: no sign, suffixes up to T and Ti (the pattern the CRD carries).
SPEC_SUFFIXES = ("m", "Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T")
QUANTITY_PATTERN = rf"^[0-9]+(\.[0-9]+)?({'|'.join(SPEC_SUFFIXES)})?$"


def parse_quantity(text: str) -> Decimal:
    """The quantity's value ('250m' -> 0.25, '1Ki' -> 1024); ValueError if it is none."""
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a quantity such as 250m, 1.5, 512Mi or 2Gi")
    return Decimal(match.group(1)) * FACTORS[match.group(2) or ""]
