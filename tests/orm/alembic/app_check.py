"""Reads and writes through the SQLAlchemy ORM as an application would;
prints one JSON object with what the client received, for tests/orm.rs."""
import datetime
import decimal
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from db import url  # noqa: E402
from models import Account, Client, Segment  # noqa: E402
from sqlalchemy import create_engine, func, select, update  # noqa: E402
from sqlalchemy.orm import Session, selectinload  # noqa: E402

id_number, phone = sys.argv[1], sys.argv[2]
engine = create_engine(url())
out = {}
with Session(engine) as s, s.begin():
    c = Client(
        full_name="李四",
        id_number=id_number,
        phone=phone,
        birth=datetime.date(1990, 7, 15),
        segment=Segment.private,
        attrs={"channel": "app"},
    )
    c.accounts.append(Account(iban="DE89370400440532013000", balance=decimal.Decimal("1200.50")))
    s.add(c)
    s.flush()
    out["created_id"] = c.id

with Session(engine) as s:
    got = s.scalars(select(Client).options(selectinload(Client.accounts)).where(Client.id == out["created_id"])).one()
    out["read"] = {
        "full_name": got.full_name,
        "id_number": got.id_number,
        "phone": got.phone,
        "birth": got.birth.isoformat() if got.birth else None,
        "segment": got.segment.value,
        "attrs": got.attrs,
        "accounts": [str(a.balance) for a in got.accounts],
    }
    out["found_by_id_number"] = s.scalar(select(func.count()).where(Client.id_number == id_number))
    out["by_segment"] = [
        [seg.value, n] for seg, n in s.execute(select(Client.segment, func.count()).group_by(Client.segment).order_by(Client.segment))
    ]
    s.execute(update(Account).where(Account.client_id == got.id).values(balance=Account.balance + 1))
    got.attrs = {**got.attrs, "checked": True}
    s.commit()
    out["balance_after"] = str(s.scalar(select(Account.balance).where(Account.client_id == got.id)))
print(json.dumps(out, ensure_ascii=False))
