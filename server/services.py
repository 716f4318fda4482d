"""Assembles the services from explicit parts: settings, store, notifier, clock."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from server.auth import repository as auth_repository
from server.auth.repository import UserRepository
from server.auth.service import AuthService
from server.auth.tokens import TokenIssuer
from server.clock import Clock
from server.config import Settings
from server.money import parse_amount
from server.mpesa import repository as c2b_repository
from server.mpesa.rules import ValidationRules
from server.mpesa.service import C2BService
from server.notifications import Notifier
from server.store import IndexSpec, Store

INDEXES: list[IndexSpec] = [*auth_repository.INDEXES, *c2b_repository.INDEXES]


@dataclass
class Services:
    store: Store
    auth: AuthService
    c2b: C2BService
    notifier: Notifier


def validation_rules(settings: Settings) -> ValidationRules:
    c2b = settings.c2b
    return ValidationRules(
        account_pattern=re.compile(c2b.validation_account_pattern),
        min_amount=parse_amount(c2b.validation_min_amount, c2b.currency),
        max_amount=parse_amount(c2b.validation_max_amount, c2b.currency),
        currency=c2b.currency,
        shortcodes=frozenset(c2b.validation_shortcodes or (settings.daraja.shortcode,)),
    )


def build_services(settings: Settings, store: Store, notifier: Notifier,
                   clock: Clock) -> Services:
    tokens = TokenIssuer(settings.auth.jwt_secret,
                         timedelta(minutes=settings.auth.access_token_minutes),
                         timedelta(hours=settings.auth.refresh_token_hours))
    auth = AuthService(UserRepository(store), tokens, clock)
    c2b = C2BService(c2b_repository.InboxRepository(store),
                     c2b_repository.C2BPaymentRepository(store), validation_rules(settings),
                     notifier, clock,
                     validation_deadline=settings.c2b.validation_deadline_seconds,
                     validation_fallback=settings.c2b.validation_fallback)
    return Services(store=store, auth=auth, c2b=c2b, notifier=notifier)
