from django.urls import path

from marketplace.catalog import views

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("<int:node_id>/", views.offer_detail, name="offer_detail"),
]
