"""tasks and household members

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "members",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("notes", sa.Text),
        sa.Column("category", sa.String(40)),
        sa.Column("category_source", sa.String(20)),
        sa.Column("room", sa.String(80)),
        sa.Column("due_date", sa.Date),
        sa.Column("recurrence_days", sa.Integer),
        sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.Column("assignee", sa.String(120)),
        sa.Column("embedding", sa.LargeBinary),
        sa.Column("embedded_text", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_tasks_category", "tasks", ["category"])


def downgrade() -> None:
    op.drop_index("ix_tasks_category", "tasks")
    op.drop_table("tasks")
    op.drop_table("members")
