"""A gspread client from a service-account JSON key, optionally at another Sheets endpoint.

`api_url` plays the part of Google client libraries' `api_endpoint` option: requests meant for
https://sheets.googleapis.com go there instead (an emulator, a proxy). The OAuth token endpoint
is the key's own `token_uri`.
"""

from __future__ import annotations

from typing import Any

import gspread
import requests
from google.auth.transport.requests import AuthorizedSession
from google.oauth2.service_account import Credentials

SHEETS_URL = "https://sheets.googleapis.com/"
SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)


class EndpointAdapter(requests.adapters.HTTPAdapter):
    """Sends requests for one URL prefix to another base URL."""

    def __init__(self, prefix: str, target: str) -> None:
        super().__init__()
        self._prefix = prefix
        self._target = target.rstrip("/") + "/"

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        if request.url and request.url.startswith(self._prefix):
            request.url = self._target + request.url[len(self._prefix) :]
        return super().send(request, *args, **kwargs)


def open_spreadsheet(
    credentials_file: str, spreadsheet_id: str, *, api_url: str | None = None, timeout: float = 30
) -> gspread.Spreadsheet:
    credentials = Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
        credentials_file, scopes=list(SCOPES)
    )
    session = AuthorizedSession(credentials)  # type: ignore[no-untyped-call]
    if api_url:
        session.mount(SHEETS_URL, EndpointAdapter(SHEETS_URL, api_url))
    client = gspread.Client(auth=credentials, session=session)
    client.set_timeout(timeout)
    return client.open_by_key(spreadsheet_id)
