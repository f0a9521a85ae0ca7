"""Accounts in the store: users, groups (whose ACLs grant admin, VCs and storages), tokens, storages
and per-VC settings (runtime VCs, per-user limits). Migration `0002_accounts`.

Passwords are argon2 hashes and tokens are stored as SHA-256 digests: the database never holds a
credential that could be replayed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .models import Base


class UserGroup(Base):
    __tablename__ = "user_groups"
    __table_args__ = (UniqueConstraint("user_id", "group_id", name="uq_user_groups"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # order of the user's grouplist


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)  # None: no password login
    extension: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # sshKeys, ...
    origin: Mapped[str] = mapped_column(String(16), default="basic")  # basic | lab | hub
    created_time: Mapped[int] = mapped_column(BigInteger)

    memberships: Mapped[list[UserGroup]] = relationship(
        cascade="all, delete-orphan", order_by="UserGroup.position", lazy="selectin"
    )


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    groupname: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    external_name: Mapped[str] = mapped_column(String(255), default="")
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    virtual_clusters: Mapped[list[Any]] = mapped_column(JSON, default=list)
    storages: Mapped[list[Any]] = mapped_column(JSON, default=list)  # the first one is a default storage
    extension: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # free-form, besides the ACLs

    members: Mapped[list[UserGroup]] = relationship(cascade="all, delete-orphan", viewonly=False)


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_id: Mapped[str] = mapped_column(String(32), unique=True)  # the public part, shown in lists
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the whole token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    application: Mapped[bool] = mapped_column(Boolean, default=False)
    description: Mapped[str] = mapped_column(String(255), default="")
    created_time: Mapped[int] = mapped_column(BigInteger)
    expires_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None: never
    last_used_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Storage(Base):
    __tablename__ = "storages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(32), default="local")
    path: Mapped[str] = mapped_column(Text)  # on one box: a directory of the server's host
    share: Mapped[bool] = mapped_column(Boolean, default=True)  # False: a subdirectory per user
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    mount_path: Mapped[str] = mapped_column(String(255), default="")  # default mountPath in tasks
    created_time: Mapped[int] = mapped_column(BigInteger)


class VcSetting(Base):
    """A VC created or resized at runtime (virtual cells over the layout's) and its per-user limits."""

    __tablename__ = "vc_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    # None: the layout's definition; [] with deleted=True: removed at runtime
    virtual_cells: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    max_gpu_per_user: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_jobs_per_user: Mapped[int | None] = mapped_column(Integer, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
