"""Mobile-money payment gateway for health-insurance premiums."""
