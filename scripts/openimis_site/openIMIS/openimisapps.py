"""The openIMIS modules this site runs (the `report` module imports this list)."""

MODULES = [
    "core",
    "report",
    "location",
    "medical",
    "medical_pricelist",
    "product",
    "insuree",
    "policy",
    "contribution",
    "payer",
    "claim",
    "claim_batch",
    "tools",
    "calculation",
    "contribution_plan",
    "invoice",
]


def openimis_apps() -> list[str]:
    return list(MODULES)
