"""SQLAlchemy 2 models of a small CRM, the state after all migrations."""
import datetime
import decimal
import enum

from sqlalchemy import ForeignKey, Index, Numeric, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Segment(enum.Enum):
    retail = "retail"
    private = "private"
    corporate = "corporate"


class Client(Base):
    __tablename__ = "crm_client"
    id: Mapped[int] = mapped_column(primary_key=True)
    full_name: Mapped[str] = mapped_column(String(100))
    id_number: Mapped[str] = mapped_column(String(18), unique=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    birth: Mapped[datetime.date | None]
    segment: Mapped[Segment] = mapped_column(default=Segment.retail)
    attrs: Mapped[dict] = mapped_column(JSONB, server_default="{}")
    created_at: Mapped[datetime.datetime] = mapped_column(server_default=func.now())
    accounts: Mapped[list["Account"]] = relationship(back_populates="client")
    __table_args__ = (Index("ix_crm_client_segment_created", "segment", "created_at"),)


class Account(Base):
    __tablename__ = "crm_account"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("crm_client.id", ondelete="CASCADE"), index=True)
    iban: Mapped[str] = mapped_column(String(34))
    balance: Mapped[decimal.Decimal] = mapped_column(Numeric(14, 2), default=0)
    client: Mapped[Client] = relationship(back_populates="accounts")
