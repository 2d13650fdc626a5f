"""A logdir's safety: one run at a time, the record of what this code wrote, odd entries refused."""
