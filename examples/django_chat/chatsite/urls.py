"""URLs of the chat example; ``/ws`` is not here: asgi.py sends it to the hub."""

from __future__ import annotations

from chat import views
from django.contrib.auth import views as auth_views
from django.urls import path

urlpatterns = [
    path("", views.chat, name="chat"),
    path("chat.js", views.chat_script, name="chat-script"),
    path("openline.js", views.openline_script, name="openline-script"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
