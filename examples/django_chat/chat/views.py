"""The chat page and the two scripts it loads."""

from __future__ import annotations

import importlib.resources
import pathlib

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

STATIC = pathlib.Path(__file__).parent / "static"


@login_required
def chat(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/chat.html")


def chat_script(request: HttpRequest) -> HttpResponse:
    return HttpResponse((STATIC / "chat.js").read_bytes(), content_type="text/javascript")


def openline_script(request: HttpRequest) -> HttpResponse:
    """The browser client, from the installed package: it always matches the hub."""
    source = importlib.resources.files("openline.web").joinpath("openline.js").read_bytes()
    return HttpResponse(source, content_type="text/javascript")
