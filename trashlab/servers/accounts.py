"""Isolating IoT traffic without Docker: NATS accounts, the local stand-in for a private network.

Docker's ``iot-net`` keeps containers that are not on it from reaching the broker at all. A NATS
account does the same for messages: subjects are private to an account, so a client logged in to
another account sees nothing on ``trash-level`` even though it talks to the very same server.
``AccountsBroker`` is a :class:`~trashlab.broker.Broker` started with such a configuration.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Optional

from .broker import Broker
from .config import Ports, ServerConfig, accounts_block, freeze_accounts
from ..errors import BadArgument

#: Teaching defaults: the IoT account (gateways and the report service) and an office account.
DEFAULT_ACCOUNTS = {
    "IOT": {"gateway": "gateway-pw", "report": "report-pw"},
    "OFFICE": {"intern": "intern-pw"},
}


def accounts_config(accounts: Mapping[str, Mapping[str, str]]) -> str:
    """The nats-server configuration text declaring ``accounts`` (account → {user: password})."""
    return accounts_block(freeze_accounts(accounts)) + "\n"


class AccountsBroker(Broker):
    """A broker whose clients log in to accounts; ``url_for(user)`` is that user's connection URL."""

    _joins_class = False  # its accounts stay on this machine, even in a joined class

    def __init__(self, name: str = "iot-msg", accounts: Optional[Mapping[str, Mapping[str, str]]] = None,
                 **options) -> None:
        super().__init__(name, **options)
        self.accounts = {a: dict(u) for a, u in (accounts or DEFAULT_ACCOUNTS).items()}
        accounts_config(self.accounts)  # bad input fails now, not at start

    def _config(self, ports: Ports, store: Optional[str], ports_dir: Optional[str]) -> ServerConfig:
        return replace(super()._config(ports, store, ports_dir), accounts=freeze_accounts(self.accounts))

    def account_of(self, user: str) -> str:
        """The account a user belongs to."""
        for account, users in self.accounts.items():
            if user in users:
                return account
        raise BadArgument(f"no user {user!r} on broker {self.name}: use one of "
                          f"{', '.join(u for users in self.accounts.values() for u in users)}")

    def url_for(self, user: Optional[str] = None) -> str:
        """Client URL logging in as ``user`` (default: the first user of the first account), e.g.
        ``nats://gateway:gateway-pw@127.0.0.1:40825``."""
        if user is None:
            user = next(u for users in self.accounts.values() for u in users)
        account = self.account_of(user)
        return self.url.replace("nats://", f"nats://{user}:{self.accounts[account][user]}@", 1)

    def users(self):
        """Who may log in, and to which account, as a table."""
        import pandas as pd

        return pd.DataFrame([{"user": u, "account": a} for a, users in self.accounts.items() for u in users])
