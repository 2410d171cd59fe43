from django.urls import path

from accounts import profile_views, two_factor_views, views

app_name = "accounts"

urlpatterns = [
    path("login/", two_factor_views.TwoFactorLoginView.as_view(), name="login"),
    path("logout/", views.BluesparkLogoutView.as_view(), name="logout"),
    path("sign-up/", views.sign_up, name="sign_up"),
    path("sign-up/sent/", views.sign_up_sent, name="sign_up_sent"),
    path("activate/<str:user_id>/<str:token>/", views.activate, name="activate"),
    path("password-reset/", views.password_reset, name="password_reset"),
    path("password-reset/sent/", views.password_reset_sent, name="password_reset_sent"),
    path("password-reset/done/", views.password_reset_complete, name="password_reset_complete"),
    # The access log redacts URL arguments named ``token``.
    path("password-reset/<str:user_id>/<str:token>/", views.password_reset_confirm, name="password_reset_confirm"),
    path("password/", views.password_change, name="password_change"),
    path("profile/", profile_views.profile, name="profile"),
    path("profile/email/", profile_views.email_change, name="email_change"),
    # The access log redacts URL arguments named ``token``.
    path("profile/email/<str:user_id>/<str:token>/", profile_views.email_change_confirm, name="email_change_confirm"),
    path("", views.home, name="home"),
]
