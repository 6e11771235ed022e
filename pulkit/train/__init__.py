"""Training: shared loop machinery and the stages (BD, mining, TC, supervised)."""
