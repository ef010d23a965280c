"""The shapes of the usual records, for msgspec to decode and type-check in one pass.

nudge/flows/contract.py's fast path reads these; anything they do not accept goes to its full
path. They live apart from the contract because msgspec reads a Struct's annotations at run
time, and a module compiled by mypyc (nudge/tools/native.py) does not keep them: this one stays
Python, the contract is compiled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec

MAX_ID: Final = 256
MAX_TEXT: Final = 1024
MAX_CATEGORY: Final = 128
MAX_PRODUCTS: Final = 200
MAX_QUANTITY: Final = 10_000
# A producer's retry key: UUIDs and Segment's ids are under 64 characters; anything much
# longer is not an id (de-duplication keeps a digest, but the record still travels).
MAX_MESSAGE_ID: Final = 256

Aware = Annotated[datetime, msgspec.Meta(tz=True)]

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID)]
_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT)]
_Price = Annotated[float, msgspec.Meta(ge=0)]


class WireProduct(msgspec.Struct, gc=False):
    # The untrusted shape, with its limits; nudge/flows/contract.py makes it a records.Product.
    product_id: _Id
    name: _Text = ""
    price: _Price = 0.0
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)] = 1
    category: Annotated[str, msgspec.Meta(max_length=MAX_CATEGORY)] = ""
    image_url: _Text = ""
    url: _Text = ""


class WireProperties(msgspec.Struct, gc=False):
    # One struct for every track event: a product's fields (product events) and an
    # order's (Order Completed); which ones matter is decided by the event name.
    product_id: _Id | None = None
    name: _Text = ""
    price: _Price = 0.0
    quantity: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUANTITY)] = 1
    category: Annotated[str, msgspec.Meta(max_length=MAX_CATEGORY)] = ""
    image_url: _Text = ""
    url: _Text = ""
    order_id: _Id | None = None
    revenue: _Price | None = None
    total: _Price | None = None
    products: Annotated[list[WireProduct], msgspec.Meta(max_length=MAX_PRODUCTS)] | None = None


class WireTraits(msgspec.Struct, gc=False):
    email: Annotated[str, msgspec.Meta(max_length=254)] | None = None
    first_name: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    last_name: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    timezone: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    marketing_consent: bool | None = None


class WireContext(msgspec.Struct, gc=False):
    # RudderStack's SDKs send an identify's traits here (and only here)
    traits: WireTraits | None = None


class WireDoc(msgspec.Struct, gc=False):
    type: str
    timestamp: Aware
    event: str | None = None
    userId: _Id | None = None
    anonymousId: _Id | None = None
    messageId: Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_ID)] | None = None
    properties: WireProperties | None = None
    traits: WireTraits | None = None
    context: WireContext | None = None


decode = msgspec.json.Decoder(WireDoc).decode
