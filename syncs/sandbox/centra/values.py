"""Values shared by the Centra simulator's parts: currencies, money as Centra shows it, timestamps."""

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

CURRENCIES = {
    code: {"id": index + 1, "code": code, "name": name}
    for index, (code, name) in enumerate(
        [("SEK", "Swedish krona"), ("EUR", "Euro"), ("GBP", "Pound sterling"), ("USD", "US dollar")]
    )
}
COUNTRIES = {"SE": "Sweden", "DE": "Germany", "GB": "United Kingdom", "US": "United States", "FR": "France"}
# Buckets of a fresh instance: (type, interval) -> (quota, seconds).


# How far Centra's clock is from the machine's (the control API's ``clock``): history can be made in the past.
CLOCK = {"offset_seconds": 0.0}


def now_iso() -> str:
    moment = datetime.now(UTC) + timedelta(seconds=CLOCK["offset_seconds"])
    return moment.astimezone().isoformat(timespec="seconds")


def dec(value) -> Decimal:
    return Decimal(str(value))


def places(currency: str) -> Decimal:
    return Decimal(1) if currency == "JPY" else Decimal("0.01")


def money(amount: Decimal, currency: str) -> dict:
    amount = dec(amount).quantize(places(currency), rounding=ROUND_HALF_UP)
    return {
        "value": float(amount),
        "currency": CURRENCIES.get(currency, {"id": 99, "code": currency, "name": currency}),
        "formattedValue": f"{amount} {currency}",
        "conversionRate": 1.0,
    }


def excluding_tax(amount: Decimal, tax_percent: Decimal, currency: str) -> Decimal:
    return (amount / (1 + tax_percent / 100)).quantize(places(currency), rounding=ROUND_HALF_UP)
