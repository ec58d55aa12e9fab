"""the categories a household added, and the labelled examples of its corrections

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "categories",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("household", sa.String(64), nullable=False),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("household", "name"),
    )
    op.create_table(
        "examples",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("household", sa.String(64), nullable=False),
        sa.Column("task_id", sa.Integer, unique=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("label", sa.String(40), nullable=False),
        sa.Column("model_category", sa.String(40)),
        sa.Column("model_source", sa.String(20)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_examples_household", "examples", ["household"])


def downgrade() -> None:
    op.drop_index("ix_examples_household", "examples")
    op.drop_table("examples")
    op.drop_table("categories")
