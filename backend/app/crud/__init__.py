"""All data access: each function takes a session and does one thing; none calls out of the process."""
