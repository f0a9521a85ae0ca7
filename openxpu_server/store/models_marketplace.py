"""Marketplace templates in the store (OpenPAI's openpaimarketplace items), migration `0003_marketplace`.

Tags, categories and the groups an item is shared with are link rows, so search and visibility are
plain SQL on SQLite and PostgreSQL alike. Stars are one row per (item, user); `star_count` and
`use_count` are kept on the item for ordering.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .models import Base


class MarketplaceItem(Base):
    __tablename__ = "marketplace_items"
    __table_args__ = (
        UniqueConstraint("author", "name", name="uq_marketplace_items_author_name"),
        Index("ix_marketplace_items_visibility", "visibility"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    name: Mapped[str] = mapped_column(String(255))
    author: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(16), default="template")
    source: Mapped[str] = mapped_column(String(16), default="user")  # user | builtin
    summary: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")  # markdown
    protocol: Mapped[str] = mapped_column(Text)  # job protocol v2 YAML
    notebook: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    visibility: Mapped[str] = mapped_column(String(16), default="public")  # public | private | groups
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    star_count: Mapped[int] = mapped_column(Integer, default=0)
    created_time: Mapped[int] = mapped_column(BigInteger)
    updated_time: Mapped[int] = mapped_column(BigInteger)

    tags: Mapped[list[MarketplaceTag]] = relationship(cascade="all, delete-orphan", order_by="MarketplaceTag.position")
    categories: Mapped[list[MarketplaceCategory]] = relationship(
        cascade="all, delete-orphan", order_by="MarketplaceCategory.position"
    )
    groups: Mapped[list[MarketplaceGroup]] = relationship(cascade="all, delete-orphan", order_by="MarketplaceGroup.position")


class MarketplaceTag(Base):
    __tablename__ = "marketplace_item_tags"
    __table_args__ = (UniqueConstraint("item_id", "tag", name="uq_marketplace_item_tags"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("marketplace_items.id", ondelete="CASCADE"), index=True)
    tag: Mapped[str] = mapped_column(String(64), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class MarketplaceCategory(Base):
    __tablename__ = "marketplace_item_categories"
    __table_args__ = (UniqueConstraint("item_id", "category", name="uq_marketplace_item_categories"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("marketplace_items.id", ondelete="CASCADE"), index=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class MarketplaceGroup(Base):
    __tablename__ = "marketplace_item_groups"
    __table_args__ = (UniqueConstraint("item_id", "group_name", name="uq_marketplace_item_groups"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("marketplace_items.id", ondelete="CASCADE"), index=True)
    group_name: Mapped[str] = mapped_column(String(255), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)


class MarketplaceStar(Base):
    __tablename__ = "marketplace_stars"

    item_id: Mapped[str] = mapped_column(ForeignKey("marketplace_items.id", ondelete="CASCADE"), primary_key=True)
    username: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_time: Mapped[int] = mapped_column(BigInteger)


class MarketplaceSeed(Base):
    """Built-in templates loaded once: a deleted built-in is not loaded again at the next start."""

    __tablename__ = "marketplace_seeds"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    seeded_time: Mapped[int] = mapped_column(BigInteger)
