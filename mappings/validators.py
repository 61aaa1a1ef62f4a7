import re

from django.core.exceptions import ValidationError

from mappings.money import is_currency

_CODE = re.compile(r"^[^\s\x00-\x1f\x7f]+$")
# A spreadsheet runs a cell starting with one of these as a formula (OWASP's list: tab and carriage return too).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def validate_code(value: str) -> None:
    """A SKU, part number or other code: no spaces or control characters."""
    if not _CODE.match(value):
        raise ValidationError(
            "%(value)r is not a valid code: it must not contain spaces or control characters.",
            params={"value": value},
            code="invalid_code",
        )


def gtin_check_digit_ok(value: str) -> bool:
    """The GS1 check digit of a GTIN-8, -12 (UPC), -13 (EAN) or -14."""
    if not value.isdigit() or len(value) not in (8, 12, 13, 14):
        return False
    digits = [int(d) for d in value]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def validate_gtin(value: str) -> None:
    if not gtin_check_digit_ok(value):
        raise ValidationError(
            "%(value)r is not a valid EAN/GTIN: it must be 8, 12, 13 or 14 digits with a correct check digit.",
            params={"value": value},
            code="invalid_gtin",
        )


def validate_currency(value: str) -> None:
    if not is_currency(value):
        raise ValidationError(
            "%(value)r is not an ISO 4217 currency code (for example EUR, GBP, SEK).",
            params={"value": value},
            code="invalid_currency",
        )


def starts_like_formula(value: str) -> bool:
    """Whether a spreadsheet opening ``value`` in a CSV file might run it as a formula: it starts with one of
    FORMULA_STARTS, or does after leading spaces or line breaks (a CR read back from a file becomes a line break)."""
    return value.startswith(FORMULA_STARTS) or value.lstrip().startswith(FORMULA_STARTS)
