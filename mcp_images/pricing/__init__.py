"""Token and price tables -> estimates and actual cost."""
