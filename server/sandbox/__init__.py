"""The sandbox: gateway and simulators on one machine, demo data and history."""
