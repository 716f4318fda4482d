"""Operations: dashboard, health, metrics, API description."""
