"""Segment spec field look-ups shared by connectors: traits, email and phone, order value,
currency, products, order id. Pure functions of an EventData."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sst.connectors.base import EventData


def trait(event: EventData, *keys: str) -> str | None:
    """First non-empty trait among `keys`, looked up in traits, traits.address, context.traits."""
    ctx_traits = event.context.get("traits") if isinstance(event.context, dict) else None
    for source in (event.traits, (event.traits or {}).get("address"), ctx_traits,
                   (ctx_traits or {}).get("address") if isinstance(ctx_traits, dict) else None):
        if not isinstance(source, dict):
            continue
        for key in keys:
            val = source.get(key)
            if val not in (None, "") and not isinstance(val, dict | list):
                return str(val)
    return None


def user_email(event: EventData) -> str | None:
    return event.email or trait(event, "email")


def user_phone(event: EventData) -> str | None:
    return event.phone or trait(event, "phone")


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v in (None, ""):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def order_value(props: Mapping) -> float | None:
    """Segment e-commerce value: revenue, else total, else value."""
    for key in ("revenue", "total", "value"):
        v = _num(props.get(key))
        if v is not None:
            return v
    return None


def currency(props: Mapping) -> str | None:
    cur = props.get("currency")
    return str(cur).strip().upper() if cur else None


def money(props: Mapping, value_key: str = "value", currency_key: str = "currency") -> dict:
    """The order value and currency under each platform's own key names (absent: omitted)."""
    out: dict = {}
    value = order_value(props)
    if value is not None:
        out[value_key] = value
    cur = currency(props)
    if cur:
        out[currency_key] = cur
    return out


def products(props: Mapping) -> list[dict]:
    """Segment `products[]` (or the single product of Product Viewed/Added) as
    dicts with id, name, quantity, price (absent keys omitted)."""
    items = props.get("products")
    if not isinstance(items, list):
        items = [props] if (props.get("product_id") or props.get("sku")) else []
    out = []
    for p in items:
        if not isinstance(p, dict):
            continue
        pid = p.get("product_id") or p.get("sku") or p.get("id")
        if pid in (None, ""):
            continue
        item: dict[str, Any] = {"id": str(pid)}
        if p.get("name"):
            item["name"] = str(p["name"])
        qty = _num(p.get("quantity"))
        if qty is not None:
            item["quantity"] = int(qty) if qty == int(qty) else qty
        price = _num(p.get("price"))
        if price is not None:
            item["price"] = price
        if p.get("category"):
            item["category"] = str(p["category"])
        if p.get("brand"):
            item["brand"] = str(p["brand"])
        out.append(item)
    return out


def order_id(props: Mapping) -> str | None:
    oid = props.get("order_id") or props.get("orderId")
    return str(oid) if oid not in (None, "") else None
