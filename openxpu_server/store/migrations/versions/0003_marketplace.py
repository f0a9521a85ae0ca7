"""marketplace: template items, their tags, categories and groups, stars, built-in seeds

Revision ID: 0003_marketplace
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_marketplace"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "marketplace_items",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("author", sa.String(255), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("protocol", sa.Text(), nullable=False),
        sa.Column("notebook", sa.JSON(), nullable=True),
        sa.Column("visibility", sa.String(16), nullable=False),
        sa.Column("use_count", sa.Integer(), nullable=False),
        sa.Column("star_count", sa.Integer(), nullable=False),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("author", "name", name="uq_marketplace_items_author_name"),
    )
    op.create_index("ix_marketplace_items_visibility", "marketplace_items", ["visibility"])
    for table, column, length in (
        ("marketplace_item_tags", "tag", 64),
        ("marketplace_item_categories", "category", 64),
        ("marketplace_item_groups", "group_name", 255),
    ):
        op.create_table(
            table,
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("item_id", sa.String(32), sa.ForeignKey("marketplace_items.id", ondelete="CASCADE"), nullable=False),
            sa.Column(column, sa.String(length), nullable=False),
            sa.Column("position", sa.Integer(), nullable=False),
            sa.UniqueConstraint("item_id", column, name=f"uq_{table}"),
        )
        op.create_index(f"ix_{table}_item_id", table, ["item_id"])
        op.create_index(f"ix_{table}_{column}", table, [column])
    op.create_table(
        "marketplace_stars",
        sa.Column("item_id", sa.String(32), sa.ForeignKey("marketplace_items.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "marketplace_seeds",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("seeded_time", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("marketplace_seeds")
    op.drop_table("marketplace_stars")
    for table in ("marketplace_item_groups", "marketplace_item_categories", "marketplace_item_tags"):
        op.drop_table(table)
    op.drop_index("ix_marketplace_items_visibility", table_name="marketplace_items")
    op.drop_table("marketplace_items")
