from __future__ import annotations

from django.urls import path

from jobplatform.api import views

urlpatterns = [
    path("", views.ApiRootApi.as_view(), name="api-root"),
    path("health/", views.HealthApi.as_view(), name="health"),
    path("health/processes/", views.ProcessHealthApi.as_view(), name="health-processes"),
    path("keys/", views.ApiKeyListCreateApi.as_view(), name="api-key-list"),
    path("keys/<str:prefix>/revoke/", views.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("auth/token/", views.TokenObtainApi.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.TokenRefreshApi.as_view(), name="token-refresh"),
]
