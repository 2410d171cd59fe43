from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.BluesparkLoginView.as_view(), name="login"),
    path("logout/", views.BluesparkLogoutView.as_view(), name="logout"),
    path("sign-up/", views.sign_up, name="sign_up"),
    path("sign-up/sent/", views.sign_up_sent, name="sign_up_sent"),
    path("activate/<str:user_id>/<str:token>/", views.activate, name="activate"),
    path("", views.home, name="home"),
]
